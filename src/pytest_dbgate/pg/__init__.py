"""PostgreSQL itself: connections, programs, embedded servers, the gate lock, the janitor."""
