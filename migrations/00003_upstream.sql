-- +goose Up
-- The archive of the Kafka topic herald.upstream, written by admin's archiver. id is the record's
-- server-assigned id, so a record consumed twice (a restart before the offset commit) is stored once.
CREATE TABLE upstream_messages (
    id              VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    uid             VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    device          VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    conn_id         VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    node            VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    ts              BIGINT       NOT NULL,
    data            MEDIUMBLOB   NOT NULL,
    kafka_partition INT          NOT NULL,
    kafka_offset    BIGINT       NOT NULL,
    archived_at     DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    KEY upstream_uid_ts (uid, ts),
    KEY upstream_ts (ts)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- +goose Down
DROP TABLE upstream_messages;
