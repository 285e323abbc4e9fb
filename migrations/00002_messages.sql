-- +goose Up
-- Pushed messages that must outlive the call: those with a ttl (pending until acked or expired) and
-- those with a caller id (remembered, so a repeated call stores and delivers nothing new).
-- id is push-route's ULID or the caller's id. expires_at is when the row may go: the ttl's end, or
-- the end of the idempotency window for a message that was never stored for anyone.
CREATE TABLE messages (
    id         VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    data       MEDIUMBLOB   NOT NULL,
    ts         BIGINT       NOT NULL,
    ttl_s      INT UNSIGNED NOT NULL,
    created_at DATETIME(3)  NOT NULL,
    expires_at DATETIME(3)  NOT NULL,
    PRIMARY KEY (id),
    KEY messages_expires_at (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- What each user still has to receive. seq keeps the order messages were stored in, which the replay
-- on connect follows.
CREATE TABLE inbox (
    seq        BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    uid        VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    message_id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    expires_at DATETIME(3)  NOT NULL,
    PRIMARY KEY (seq),
    UNIQUE KEY inbox_uid_message (uid, message_id),
    KEY inbox_expires_at (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- +goose Down
DROP TABLE inbox;
DROP TABLE messages;
