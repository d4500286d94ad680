"""Static rules over the migrations' syntax trees."""
