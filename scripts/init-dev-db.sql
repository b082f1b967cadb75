-- Development database initialisation; runs once when the database is new.
-- The schema itself comes from the service's embedded migrations.
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
