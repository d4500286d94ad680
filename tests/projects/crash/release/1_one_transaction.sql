UPDATE accounts SET visits = visits + 1;
INSERT INTO applied VALUES ('1.2');
