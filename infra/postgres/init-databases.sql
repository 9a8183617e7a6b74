-- Run once by the postgres image on its first start (docker-entrypoint-initdb.d), as the lrem role
-- (POSTGRES_USER); POSTGRES_DB created airflow. The databases `make up` creates (components/stack/postgres.py).
CREATE DATABASE mlflow OWNER lrem;
CREATE DATABASE lrem_events OWNER lrem;
