-- The event log (eventlog::sql::SqlLog). One head row per (log, topic)
-- holds the topic's epoch, its last sequence number and the last append
-- time; appends bump it in the same transaction that inserts the entry, so
-- sequence numbers are dense per topic whoever appends. A missing head row
-- means the topic's history is lost: the next use starts a new epoch (and
-- deletes entries left over from the old one).
CREATE TABLE vs_eventlog_heads (
    log     TEXT    NOT NULL,
    topic   TEXT    NOT NULL,
    epoch   TEXT    NOT NULL,
    head    BIGINT  NOT NULL,
    last_at BIGINT  NOT NULL,
    PRIMARY KEY (log, topic)
);

CREATE TABLE vs_eventlog_entries (
    log     TEXT    NOT NULL,
    topic   TEXT    NOT NULL,
    seq     BIGINT  NOT NULL,
    at      BIGINT  NOT NULL,
    payload BYTEA   NOT NULL,
    PRIMARY KEY (log, topic, seq)
);
