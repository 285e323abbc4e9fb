-- +goose Up
-- Admin console sessions ended by logging out, shared by every admin instance: a session cookie is
-- stateless (signed with -session-key), so without this list a logged-out cookie would still open
-- the console on another instance until it expired. Rows are deleted once the session would have
-- expired anyway.
CREATE TABLE admin_revoked_sessions (
    id         VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    expires_at DATETIME(3) NOT NULL,
    PRIMARY KEY (id),
    KEY admin_revoked_sessions_expires (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- +goose Down
DROP TABLE admin_revoked_sessions;
