-- Migration 6: a running task's progress (`TaskContext::progress`), written while its claim is
-- current and read back with the record.
ALTER TABLE {schema}.tasks ADD COLUMN progress bytea;
