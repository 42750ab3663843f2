-- Schema version 1 of the PostgreSQL backend (server/src/storage/postgres.rs).
-- Applied once, in a transaction, under the migration lock; never edited once released:
-- a change is a new version.
--
-- Every id is its raw bytes (bytea; compared byte by byte, so ORDER BY matches sled's key
-- order). Records (`record`, `op`, `list`) are the same JSON that the sled backend stores.
-- Sequence numbers and inbox ids are bigint (the protocol's u64 values stay far below 2^63).

-- Registered devices, by device id; `user_id` is the record's user.
CREATE TABLE devices (
    device bytea PRIMARY KEY,
    user_id bytea NOT NULL,
    record bytea NOT NULL
);
CREATE INDEX devices_by_user ON devices (user_id, device);

-- Each user's current device list.
CREATE TABLE device_lists (
    user_id bytea PRIMARY KEY,
    list bytea NOT NULL
);

-- Every list each user published, by version (`device_list_chain`).
CREATE TABLE device_list_history (
    user_id bytea NOT NULL,
    version bigint NOT NULL,
    list bytea NOT NULL,
    PRIMARY KEY (user_id, version)
);

-- The user whose lists carry each identity key.
CREATE TABLE identities (
    identity bytea PRIMARY KEY,
    user_id bytea NOT NULL
);

-- Devices a list dropped, for good (their device rows and inboxes are deleted).
CREATE TABLE unlinked (
    device bytea PRIMARY KEY,
    user_id bytea NOT NULL
);

-- One row per group with a genesis op: the seq of its newest op, and the highest message seq
-- ever used (kept when messages are deleted). Appends are conditional on these, so two nodes
-- can never store the same seq.
CREATE TABLE group_heads (
    group_id bytea PRIMARY KEY,
    last_op_seq bigint NOT NULL,
    last_msg_seq bigint NOT NULL
);

CREATE TABLE ops (
    group_id bytea NOT NULL,
    seq bigint NOT NULL,
    op bytea NOT NULL,
    PRIMARY KEY (group_id, seq)
);

CREATE TABLE messages (
    group_id bytea NOT NULL,
    seq bigint NOT NULL,
    message_id bytea NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (group_id, seq),
    UNIQUE (group_id, message_id)
);

CREATE TABLE inbox (
    device bytea NOT NULL,
    inbox_id bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (device, inbox_id)
);

-- The shares of its recipient's inbox each item counts towards (its sender, and all join
-- requests together): counted by an index-only scan, deleted with their item.
CREATE TABLE inbox_shares (
    device bytea NOT NULL,
    share bytea NOT NULL,
    inbox_id bigint NOT NULL,
    PRIMARY KEY (device, share, inbox_id),
    FOREIGN KEY (device, inbox_id) REFERENCES inbox (device, inbox_id) ON DELETE CASCADE
);
CREATE INDEX inbox_shares_by_item ON inbox_shares (device, inbox_id);

-- Inbox ids: each node takes a block of 1024 (INBOX_ID_BLOCK) at a time and hands its ids out
-- from memory. A sequence never goes back, also across crashes, so no id is ever used twice.
CREATE SEQUENCE inbox_ids INCREMENT BY 1024 MINVALUE 1 START WITH 1;

-- Appends op `s` to group `g`'s log: a genesis op (s = 0) creates the group, any other op must
-- be the next one. Otherwise raises CF001 (a conflict: another node got there first), which
-- aborts the whole transaction.
CREATE FUNCTION confide_append_op(g bytea, s bigint, o bytea) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF s = 0 THEN
        INSERT INTO group_heads (group_id, last_op_seq, last_msg_seq) VALUES (g, 0, 0)
            ON CONFLICT (group_id) DO NOTHING;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'group % exists already (it has a genesis op)', encode(g, 'hex')
                USING ERRCODE = 'CF001';
        END IF;
    ELSE
        UPDATE group_heads SET last_op_seq = s WHERE group_id = g AND last_op_seq = s - 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'op % is not the next one of group %''s log', s, encode(g, 'hex')
                USING ERRCODE = 'CF001';
        END IF;
    END IF;
    INSERT INTO ops (group_id, seq, op) VALUES (g, s, o);
END
$$;

-- Stores list `l`, version `v`, of user `u` with identity key `i` (§3.6): a version already
-- stored may only be stored again byte for byte (another node stored a different successor
-- first: CF001; two nodes storing one at the same moment: the unique key refuses the second),
-- and the current list moves only forward.
CREATE FUNCTION confide_put_device_list(u bytea, l bytea, v bigint, i bytea) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    stored bytea;
BEGIN
    SELECT list INTO stored FROM device_list_history WHERE user_id = u AND version = v;
    IF FOUND THEN
        IF stored <> l THEN
            RAISE EXCEPTION 'another device list version % of this user is stored already', v
                USING ERRCODE = 'CF001';
        END IF;
    ELSE
        INSERT INTO device_list_history (user_id, version, list) VALUES (u, v, l);
    END IF;
    IF v >= (SELECT max(version) FROM device_list_history WHERE user_id = u) THEN
        INSERT INTO device_lists (user_id, list) VALUES (u, l)
            ON CONFLICT (user_id) DO UPDATE SET list = excluded.list;
    END IF;
    INSERT INTO identities (identity, user_id) VALUES (i, u)
        ON CONFLICT (identity) DO UPDATE SET user_id = excluded.user_id;
END
$$;

-- Stores message `m` at seq `s` of group `g`: `s` must be the next seq of the group, and `m`
-- not stored in it already. Otherwise raises CF001.
CREATE FUNCTION confide_append_message(g bytea, s bigint, m bytea, r bytea) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE group_heads SET last_msg_seq = s WHERE group_id = g AND last_msg_seq = s - 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message seq % is not the next one of group %', s, encode(g, 'hex')
            USING ERRCODE = 'CF001';
    END IF;
    IF EXISTS (SELECT 1 FROM messages WHERE group_id = g AND message_id = m) THEN
        RAISE EXCEPTION 'message % is stored in group % already', encode(m, 'hex'), encode(g, 'hex')
            USING ERRCODE = 'CF001';
    END IF;
    INSERT INTO messages (group_id, seq, message_id, record) VALUES (g, s, m, r);
END
$$;
