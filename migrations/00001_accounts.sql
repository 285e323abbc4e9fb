-- +goose Up
-- Device accounts for POST /v1/login. uids are ASCII by contract (letters, digits, ._:@-), compared
-- case-sensitively.
CREATE TABLE accounts (
    uid           VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    password_hash VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    disabled      BOOLEAN      NOT NULL DEFAULT FALSE,
    created_at    DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at    DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (uid)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- API keys of business backends. Only a SHA-256 of the key is kept: keys are long random strings, so
-- a fast hash is safe and lets every request look its key up by index.
CREATE TABLE api_keys (
    id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    name       VARCHAR(128)    NOT NULL,
    prefix     VARCHAR(16) CHARACTER SET ascii NOT NULL,
    key_hash   BINARY(32)      NOT NULL,
    created_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    revoked_at DATETIME(3)     NULL,
    PRIMARY KEY (id),
    UNIQUE KEY api_keys_key_hash (key_hash)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Operators of the admin console.
CREATE TABLE admins (
    username      VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    password_hash VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at    DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (username)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- +goose Down
DROP TABLE admins;
DROP TABLE api_keys;
DROP TABLE accounts;
