-- Every statement that appends events tells the listening processes
-- (`LISTEN waymark_events`), at commit: event streams of every server wake
-- at once, whichever server or worker wrote. The payload is the newest
-- event's number.
CREATE FUNCTION waymark_events_appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('waymark_events', (SELECT max(seq) FROM appended)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER events_appended
AFTER INSERT ON events
REFERENCING NEW TABLE AS appended
FOR EACH STATEMENT
EXECUTE FUNCTION waymark_events_appended();
