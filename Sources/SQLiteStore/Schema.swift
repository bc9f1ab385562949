/// Schema migrations, append-only, counted by `PRAGMA user_version`.
/// Never edit a shipped migration: add the next one.
enum Schema {
    static let migrations: [String] = [
        // 1: organizations, clients, secrets, keys, revocations, users, audit.
        """
        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) STRICT;
        CREATE TABLE organizations (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            client_limit INTEGER NOT NULL,
            primary_client_id TEXT,
            created_at INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE clients (
            client_id TEXT PRIMARY KEY,
            organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
            is_primary INTEGER NOT NULL DEFAULT 0,
            client_name TEXT NOT NULL,
            description TEXT,
            client_uri TEXT,
            redirect_uris TEXT NOT NULL,
            grant_types TEXT NOT NULL,
            token_endpoint_auth_method TEXT NOT NULL,
            scope TEXT NOT NULL,
            access_token_ttl INTEGER NOT NULL,
            refresh_token_ttl INTEGER NOT NULL,
            enabled INTEGER NOT NULL,
            extra_data TEXT NOT NULL,
            attributes TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            version INTEGER NOT NULL,
            last_used_at INTEGER
        ) STRICT;
        CREATE INDEX clients_by_org ON clients(organization_id, client_name, client_id);
        CREATE TABLE client_secrets (
            id INTEGER PRIMARY KEY,
            client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            hash TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER
        ) STRICT;
        CREATE INDEX client_secrets_by_client ON client_secrets(client_id);
        CREATE TABLE client_logos (
            client_id TEXT PRIMARY KEY REFERENCES clients(client_id) ON DELETE CASCADE,
            content_type TEXT NOT NULL,
            image BLOB NOT NULL,
            etag TEXT NOT NULL,
            updated_at INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE signing_keys (
            kid TEXT PRIMARY KEY,
            algorithm TEXT NOT NULL,
            private_key BLOB NOT NULL,
            encrypted INTEGER NOT NULL,
            public_key BLOB NOT NULL,
            created_at INTEGER NOT NULL,
            retired_at INTEGER
        ) STRICT;
        CREATE TABLE revoked_tokens (
            jti TEXT PRIMARY KEY,
            expires_at INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            email TEXT,
            name TEXT,
            password_hash TEXT NOT NULL,
            created_at INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE audit_events (
            id INTEGER PRIMARY KEY,
            organization_id TEXT,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT,
            surface TEXT NOT NULL,
            request_id TEXT,
            details TEXT NOT NULL,
            created_at INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX audit_by_org ON audit_events(organization_id, id);
        """,
        // 2: browser sign-in, authorization requests, codes, token families,
        // refresh tokens and connections (remembered consent).
        """
        CREATE TABLE sessions (
            id_hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            csrf TEXT NOT NULL,
            auth_time INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE authorization_requests (
            id_hash TEXT PRIMARY KEY,
            client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
            params TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            answered_at INTEGER
        ) STRICT;
        CREATE TABLE token_families (
            id TEXT PRIMARY KEY,
            client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at INTEGER NOT NULL,
            revoked_at INTEGER
        ) STRICT;
        CREATE INDEX token_families_by_user ON token_families(user_id, client_id);
        CREATE TABLE authorization_codes (
            code_hash TEXT PRIMARY KEY,
            client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            redirect_uri TEXT NOT NULL,
            redirect_uri_sent INTEGER NOT NULL,
            scope TEXT NOT NULL,
            nonce TEXT,
            code_challenge TEXT,
            auth_time INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            consumed_at INTEGER,
            family_id TEXT
        ) STRICT;
        CREATE TABLE refresh_tokens (
            token_hash TEXT PRIMARY KEY,
            family_id TEXT NOT NULL REFERENCES token_families(id) ON DELETE CASCADE,
            client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            scope TEXT NOT NULL,
            auth_time INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            rotated_at INTEGER
        ) STRICT;
        CREATE INDEX refresh_tokens_by_family ON refresh_tokens(family_id);
        CREATE TABLE connections (
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
            remembered_scope TEXT NOT NULL,
            granted_scope TEXT NOT NULL,
            auth_time INTEGER NOT NULL,
            access_time INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (user_id, client_id)
        ) STRICT;
        """,
        // 3: OAuth clients held at upstream identity providers (SPEC 6.5).
        """
        CREATE TABLE upstream_clients (
            sys_id TEXT PRIMARY KEY,
            organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            provider TEXT NOT NULL,
            tenant_id TEXT,
            client_id TEXT NOT NULL,
            secret BLOB NOT NULL,
            secret_encrypted INTEGER NOT NULL,
            description TEXT,
            cluster_redirect_urls TEXT NOT NULL,
            opswise_groups TEXT NOT NULL,
            scopes TEXT NOT NULL,
            version INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            UNIQUE (organization_id, name)
        ) STRICT;
        """,
        // 4: the expiry sweeps that run with each insert use an index, not a scan.
        """
        CREATE INDEX authorization_requests_by_expiry ON authorization_requests(expires_at);
        CREATE INDEX authorization_codes_by_expiry ON authorization_codes(expires_at);
        CREATE INDEX sessions_by_expiry ON sessions(expires_at);
        CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens(expires_at);
        """,
        // 5: a counter every change to the configuration tables bumps (in the
        // same transaction), so a worker's memo of clients, secrets and meta
        // outlives writes that touch only grants and tokens.
        """
        CREATE TABLE config_generation (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL) STRICT;
        INSERT INTO config_generation(id, n) VALUES (1, 0);
        CREATE TRIGGER organizations_insert_bumps_generation AFTER INSERT ON organizations BEGIN UPDATE config_generation SET n = n + 1; END;
        CREATE TRIGGER organizations_update_bumps_generation AFTER UPDATE ON organizations BEGIN UPDATE config_generation SET n = n + 1; END;
        CREATE TRIGGER organizations_delete_bumps_generation AFTER DELETE ON organizations BEGIN UPDATE config_generation SET n = n + 1; END;
        CREATE TRIGGER clients_insert_bumps_generation AFTER INSERT ON clients BEGIN UPDATE config_generation SET n = n + 1; END;
        CREATE TRIGGER clients_update_bumps_generation AFTER UPDATE ON clients BEGIN UPDATE config_generation SET n = n + 1; END;
        CREATE TRIGGER clients_delete_bumps_generation AFTER DELETE ON clients BEGIN UPDATE config_generation SET n = n + 1; END;
        CREATE TRIGGER client_secrets_insert_bumps_generation AFTER INSERT ON client_secrets BEGIN UPDATE config_generation SET n = n + 1; END;
        CREATE TRIGGER client_secrets_update_bumps_generation AFTER UPDATE ON client_secrets BEGIN UPDATE config_generation SET n = n + 1; END;
        CREATE TRIGGER client_secrets_delete_bumps_generation AFTER DELETE ON client_secrets BEGIN UPDATE config_generation SET n = n + 1; END;
        CREATE TRIGGER client_logos_insert_bumps_generation AFTER INSERT ON client_logos BEGIN UPDATE config_generation SET n = n + 1; END;
        CREATE TRIGGER client_logos_update_bumps_generation AFTER UPDATE ON client_logos BEGIN UPDATE config_generation SET n = n + 1; END;
        CREATE TRIGGER client_logos_delete_bumps_generation AFTER DELETE ON client_logos BEGIN UPDATE config_generation SET n = n + 1; END;
        CREATE TRIGGER signing_keys_insert_bumps_generation AFTER INSERT ON signing_keys BEGIN UPDATE config_generation SET n = n + 1; END;
        CREATE TRIGGER signing_keys_update_bumps_generation AFTER UPDATE ON signing_keys BEGIN UPDATE config_generation SET n = n + 1; END;
        CREATE TRIGGER signing_keys_delete_bumps_generation AFTER DELETE ON signing_keys BEGIN UPDATE config_generation SET n = n + 1; END;
        CREATE TRIGGER meta_insert_bumps_generation AFTER INSERT ON meta BEGIN UPDATE config_generation SET n = n + 1; END;
        CREATE TRIGGER meta_update_bumps_generation AFTER UPDATE ON meta BEGIN UPDATE config_generation SET n = n + 1; END;
        CREATE TRIGGER meta_delete_bumps_generation AFTER DELETE ON meta BEGIN UPDATE config_generation SET n = n + 1; END;
        """,
        // 6: each organization's client count, kept by triggers, so the
        // per-organization limit is checked without counting (inside the
        // writer lock) and lists report their total without a scan.
        """
        ALTER TABLE organizations ADD COLUMN client_count INTEGER NOT NULL DEFAULT 0;
        UPDATE organizations SET client_count = (SELECT count(*) FROM clients WHERE clients.organization_id = organizations.id);
        CREATE TRIGGER clients_insert_counts AFTER INSERT ON clients BEGIN
            UPDATE organizations SET client_count = client_count + 1 WHERE id = NEW.organization_id;
        END;
        CREATE TRIGGER clients_delete_counts AFTER DELETE ON clients BEGIN
            UPDATE organizations SET client_count = client_count - 1 WHERE id = OLD.organization_id;
        END;
        CREATE TRIGGER clients_move_counts AFTER UPDATE OF organization_id ON clients WHEN NEW.organization_id <> OLD.organization_id BEGIN
            UPDATE organizations SET client_count = client_count - 1 WHERE id = OLD.organization_id;
            UPDATE organizations SET client_count = client_count + 1 WHERE id = NEW.organization_id;
        END;
        """,
        // 7: the security review. A deleted client's id is retired for good
        // (a later client can never inherit its tokens: SPEC 4.5), kept by
        // trigger so that no path that deletes a client can forget it. CSRF
        // tokens are now stored as hashes: sessions made before are dropped
        // (their users sign in again).
        """
        CREATE TABLE retired_client_ids (
            client_id TEXT PRIMARY KEY,
            organization_id TEXT NOT NULL,
            retired_at INTEGER NOT NULL
        ) STRICT;
        CREATE TRIGGER clients_delete_retires_id AFTER DELETE ON clients BEGIN
            INSERT OR IGNORE INTO retired_client_ids(client_id, organization_id, retired_at)
                VALUES (OLD.client_id, OLD.organization_id, CAST(strftime('%s', 'now') AS INTEGER) * 1000);
        END;
        CREATE TRIGGER clients_insert_refuses_retired_id BEFORE INSERT ON clients
            WHEN EXISTS (SELECT 1 FROM retired_client_ids WHERE client_id = NEW.client_id) BEGIN
            SELECT RAISE(ABORT, 'client_id retired');
        END;
        DELETE FROM sessions;
        ALTER TABLE client_logos ADD COLUMN preview BLOB;
        -- Clients registered with a user's or an organization's id form before
        -- the prefixes were reserved could mint tokens with a user's subject.
        UPDATE clients SET enabled = 0 WHERE is_primary = 0 AND (lower(client_id) LIKE 'usr-%' OR lower(client_id) LIKE 'org-%');
        -- A client's token generation: tokens carry it, and bumping it ends
        -- every token issued before (a disable, an operator's reset).
        ALTER TABLE clients ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX authorization_codes_by_user_client ON authorization_codes(user_id, client_id);
        """,
        // 8: each client's ID token algorithm (SPEC 10.1); ES256 for every client so far.
        """
        ALTER TABLE clients ADD COLUMN id_token_signed_response_alg TEXT NOT NULL DEFAULT 'ES256';
        """,
        // 9: dynamically registered clients' registration access tokens (RFC 7592), hashed.
        """
        CREATE TABLE registration_tokens (
            client_id TEXT PRIMARY KEY REFERENCES clients(client_id) ON DELETE CASCADE,
            token_hash TEXT NOT NULL,
            created_at INTEGER NOT NULL
        ) STRICT;
        """,
        // 10: where a client may send the user after a logout (RP-Initiated Logout 1.0).
        """
        ALTER TABLE clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '[]';
        """,
        // 11: the standard claims behind the profile, phone and address scopes (OIDC Core §5.1).
        """
        CREATE TABLE user_profiles (
            user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
            profile TEXT NOT NULL
        ) STRICT;
        """,
        // 12: Back-Channel Logout 1.0 (each client's logout URI, the sessions that signed into each client,
        // the delivery queue; codes, and token families that end with the session, carry its sid) and
        // the claims request parameter (OIDC Core §5.5) carried by codes.
        """
        ALTER TABLE clients ADD COLUMN backchannel_logout_uri TEXT;
        ALTER TABLE clients ADD COLUMN backchannel_logout_session_required INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE sessions ADD COLUMN sid TEXT;
        -- private_key_jwt (RFC 7523 §2.2): each client's public keys, and the assertions seen (single use).
        ALTER TABLE clients ADD COLUMN jwks TEXT;
        -- userinfo_signed_response_alg (OIDC Registration §2): signed userinfo answers.
        ALTER TABLE clients ADD COLUMN userinfo_signed_response_alg TEXT;
        -- policy_uri and tos_uri (RFC 7591 §2): linked where the user decides.
        ALTER TABLE clients ADD COLUMN policy_uri TEXT;
        ALTER TABLE clients ADD COLUMN tos_uri TEXT;
        -- DPoP (RFC 9449): clients whose tokens are always bound, and public clients' bound refresh tokens.
        ALTER TABLE clients ADD COLUMN dpop_bound_access_tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE refresh_tokens ADD COLUMN dpop_jkt TEXT;
        -- Clients held to the FAPI 2.0 Security Profile (SPEC 10.2).
        ALTER TABLE clients ADD COLUMN fapi2_security_profile INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE dpop_proofs (
            jkt TEXT NOT NULL,
            jti TEXT NOT NULL,
            expires_at INTEGER NOT NULL,
            PRIMARY KEY (jkt, jti)
        ) STRICT;
        CREATE INDEX dpop_proofs_by_expiry ON dpop_proofs(expires_at);
        CREATE TABLE client_assertions (
            client_id TEXT NOT NULL,
            jti TEXT NOT NULL,
            expires_at INTEGER NOT NULL,
            PRIMARY KEY (client_id, jti)
        ) STRICT;
        CREATE INDEX client_assertions_by_expiry ON client_assertions(expires_at);
        -- Pushed authorization requests (RFC 9126): single use, 60 s; clients that must push theirs.
        CREATE TABLE pushed_requests (
            uri_hash TEXT PRIMARY KEY,
            client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
            params TEXT NOT NULL,
            expires_at INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX pushed_requests_by_expiry ON pushed_requests(expires_at);
        ALTER TABLE clients ADD COLUMN require_pushed_authorization_requests INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE authorization_codes ADD COLUMN sid TEXT;
        ALTER TABLE authorization_codes ADD COLUMN claims TEXT;
        ALTER TABLE token_families ADD COLUMN sid TEXT;
        CREATE INDEX token_families_by_sid ON token_families(sid) WHERE sid IS NOT NULL;
        CREATE TABLE session_clients (
            sid TEXT NOT NULL,
            client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            PRIMARY KEY (sid, client_id)
        ) STRICT;
        CREATE INDEX session_clients_by_user_client ON session_clients(user_id, client_id);
        CREATE INDEX session_clients_by_expiry ON session_clients(expires_at);
        CREATE TABLE logout_deliveries (
            id TEXT PRIMARY KEY,
            client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
            subject TEXT NOT NULL,
            sid TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at INTEGER NOT NULL,
            created_at INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX logout_deliveries_due ON logout_deliveries(next_attempt_at);
        CREATE INDEX logout_deliveries_by_client ON logout_deliveries(client_id, subject);
        """,
        // 13: the device authorization grant (RFC 8628): each device code (hashed) with its
        // user code (hashed, unique while kept), the polling pace, the user's answer, and the
        // address that asked (live codes are bounded per client and per address).
        """
        CREATE TABLE device_codes (
            device_code_hash TEXT PRIMARY KEY,
            user_code_hash TEXT NOT NULL UNIQUE,
            client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
            scope TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            poll_interval INTEGER NOT NULL,
            last_polled_at INTEGER,
            status TEXT NOT NULL,
            user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
            auth_time INTEGER,
            family_id TEXT,
            requested_from TEXT NOT NULL
        ) STRICT;
        CREATE INDEX device_codes_by_client ON device_codes(client_id, expires_at);
        CREATE INDEX device_codes_by_expiry ON device_codes(expires_at);
        CREATE INDEX device_codes_by_user_client ON device_codes(user_id, client_id) WHERE user_id IS NOT NULL;
        -- RFC 9449 §10: a code bound to a DPoP key (dpop_jkt, or a pushed request's proof).
        ALTER TABLE authorization_codes ADD COLUMN dpop_jkt TEXT;
        """,
        // 14: clients registered anonymously (RFC 7591, the audit log's actor `anonymous`) are marked as such, so
        // their own updates (RFC 7592) stay within what an anonymous registration may ask for. Text, not JSON
        // functions: the attributes are always an object as Latchkey wrote it, and nothing here can fail on one.
        """
        UPDATE clients
        SET attributes = '{"registered_anonymously":true' || CASE WHEN attributes = '{}' THEN '}' ELSE ',' || substr(attributes, 2) END
        WHERE substr(attributes, 1, 1) = '{' AND instr(attributes, '"registered_anonymously"') = 0
          AND client_id IN (SELECT target FROM audit_events
                            WHERE action = 'client.created' AND actor = 'anonymous' AND surface = 'registration' AND target IS NOT NULL);
        """,
        // 15: upstream records' sysIds are each organization's own (SPEC 6.0: nothing of one organization is
        // observable from another; a sysId taken elsewhere was a 409 that told it exists). The key becomes
        // (organization_id, sys_id); SQLite cannot change a primary key in place, so the table is rebuilt.
        """
        CREATE TABLE upstream_clients_by_organization (
            sys_id TEXT NOT NULL,
            organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            provider TEXT NOT NULL,
            tenant_id TEXT,
            client_id TEXT NOT NULL,
            secret BLOB NOT NULL,
            secret_encrypted INTEGER NOT NULL,
            description TEXT,
            cluster_redirect_urls TEXT NOT NULL,
            opswise_groups TEXT NOT NULL,
            scopes TEXT NOT NULL,
            version INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (organization_id, sys_id),
            UNIQUE (organization_id, name)
        ) STRICT;
        INSERT INTO upstream_clients_by_organization(sys_id, organization_id, name, provider, tenant_id, client_id, secret, secret_encrypted,
            description, cluster_redirect_urls, opswise_groups, scopes, version, created_at, updated_at)
        SELECT sys_id, organization_id, name, provider, tenant_id, client_id, secret, secret_encrypted,
            description, cluster_redirect_urls, opswise_groups, scopes, version, created_at, updated_at FROM upstream_clients;
        DROP TABLE upstream_clients;
        ALTER TABLE upstream_clients_by_organization RENAME TO upstream_clients;
        """,
        // 16: each organization's allowance of anonymous registrations (RFC 7591 without an initial access token):
        // `used` of them in the window that began at `window_start`; deleting a client gives none back (SPEC 7.1).
        """
        CREATE TABLE IF NOT EXISTS anonymous_registrations (
            organization_id TEXT PRIMARY KEY REFERENCES organizations(id) ON DELETE CASCADE,
            window_start INTEGER NOT NULL,
            used INTEGER NOT NULL
        ) STRICT;
        """,
        // 17 (review, session 25): every foreign key has an index that leads with it, so disabling, deleting or
        // tightening a client, deleting a user or changing their password (and the cascades of a delete) touch
        // their rows, not whole tables held up under the writer. Refresh tokens, the most written table, lose
        // their keys to the client and the user instead: their family's (a family has both) removes them as it
        // did, and neither an index for each nor a parent lookup for each is paid on every rotation. A device
        // authorization's per-address count reads at most that address's codes; a code remembers whether its
        // request was pushed (RFC 9126 §6, checked again at redemption), and one that exists now and is its
        // client's who must push came through PAR (nothing else gave it codes); a device code, the DPoP key it
        // was redeemed with.
        """
        CREATE TABLE refresh_tokens_rebuilt (
            token_hash TEXT PRIMARY KEY,
            family_id TEXT NOT NULL REFERENCES token_families(id) ON DELETE CASCADE,
            client_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            scope TEXT NOT NULL,
            auth_time INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            rotated_at INTEGER,
            dpop_jkt TEXT
        ) STRICT;
        INSERT INTO refresh_tokens_rebuilt(token_hash, family_id, client_id, user_id, scope, auth_time, created_at, expires_at, rotated_at, dpop_jkt)
        SELECT token_hash, family_id, client_id, user_id, scope, auth_time, created_at, expires_at, rotated_at, dpop_jkt FROM refresh_tokens;
        DROP TABLE refresh_tokens;
        ALTER TABLE refresh_tokens_rebuilt RENAME TO refresh_tokens;
        CREATE INDEX IF NOT EXISTS refresh_tokens_by_family ON refresh_tokens(family_id);
        CREATE INDEX IF NOT EXISTS authorization_codes_by_client ON authorization_codes(client_id);
        CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(user_id);
        CREATE INDEX IF NOT EXISTS token_families_by_client ON token_families(client_id);
        CREATE INDEX IF NOT EXISTS connections_by_client ON connections(client_id);
        CREATE INDEX IF NOT EXISTS authorization_requests_by_client ON authorization_requests(client_id);
        CREATE INDEX IF NOT EXISTS session_clients_by_client ON session_clients(client_id);
        CREATE INDEX IF NOT EXISTS pushed_requests_by_client ON pushed_requests(client_id);
        CREATE INDEX IF NOT EXISTS device_codes_by_client_address ON device_codes(client_id, requested_from, expires_at);
        ALTER TABLE authorization_codes ADD COLUMN pushed INTEGER NOT NULL DEFAULT 0;
        UPDATE authorization_codes SET pushed = 1 WHERE consumed_at IS NULL AND client_id IN (
            SELECT client_id FROM clients WHERE require_pushed_authorization_requests = 1 OR fapi2_security_profile = 1);
        ALTER TABLE device_codes ADD COLUMN dpop_jkt TEXT;
        """,
        // 18 (review, session 26): a logout delivery names the share it waits in (its client's organization, or
        // that organization's anonymously registered clients), so that a delivery round shares itself out and
        // each share's waiting deliveries are counted from an index. Those waiting at the upgrade (seconds'
        // worth) wait in their organization's.
        """
        ALTER TABLE logout_deliveries ADD COLUMN share_key TEXT NOT NULL DEFAULT '';
        UPDATE logout_deliveries SET share_key = COALESCE(
            (SELECT organization_id FROM clients WHERE clients.client_id = logout_deliveries.client_id), '');
        CREATE INDEX logout_deliveries_by_share ON logout_deliveries(share_key, next_attempt_at);
        """,
        // 19: token families expire (with their last refresh token; one without any, at its creation) and are
        // purged, with the refresh tokens each rotation leaves behind, a day after they expire (TokenFamilies), from
        // the expiry indexes. What is older than that at the upgrade goes here rather than in some user's request.
        // A family a node of the version before inserts (no expiry given) never expires: nodes upgraded one by one
        // purge none of its grants.
        """
        ALTER TABLE token_families ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 9223372036854775807;
        UPDATE token_families SET expires_at = MAX(created_at,
            COALESCE((SELECT MAX(expires_at) FROM refresh_tokens WHERE refresh_tokens.family_id = token_families.id), 0));
        CREATE INDEX IF NOT EXISTS token_families_by_expiry ON token_families(expires_at);
        CREATE INDEX IF NOT EXISTS refresh_tokens_by_expiry ON refresh_tokens(expires_at);
        DELETE FROM refresh_tokens WHERE expires_at < CAST(strftime('%s', 'now') AS INTEGER) * 1000 - 86400000;
        DELETE FROM token_families WHERE expires_at < CAST(strftime('%s', 'now') AS INTEGER) * 1000 - 86400000;
        """,
        // 20: failed credential checks counted for all nodes together (FailureLimiter.flush: a key is a hash of
        // an account, with the address it was tried from or without), a row per key and window.
        """
        CREATE TABLE IF NOT EXISTS failure_counts (
            key_hash TEXT PRIMARY KEY,
            window_start INTEGER NOT NULL,
            count INTEGER NOT NULL,
            expires_at INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX IF NOT EXISTS failure_counts_by_expiry ON failure_counts(expires_at);
        """,
        // 21: a refresh token names the token whose rotation issued it (a FAPI 2.0 client's retry withdraws
        // exactly that one), and a token a retry withdrew is marked (presented again, it is reuse). FAPI 2.0
        // clients' ID tokens and signed userinfo are ES256 where they were RS256 (FAPI 2.0 §5.4).
        """
        ALTER TABLE refresh_tokens ADD COLUMN parent_hash TEXT;
        ALTER TABLE refresh_tokens ADD COLUMN withdrawn_at INTEGER;
        INSERT INTO audit_events(organization_id, actor, action, target, surface, request_id, details, created_at)
        SELECT organization_id, 'migration', 'client.updated', client_id, 'migration', NULL,
          '{"reason":"FAPI 2.0 §5.4: ES256 where RS256 was stored"}', CAST(strftime('%s', 'now') AS INTEGER) * 1000
        FROM clients WHERE fapi2_security_profile = 1
          AND (id_token_signed_response_alg = 'RS256' OR userinfo_signed_response_alg = 'RS256');
        UPDATE clients SET id_token_signed_response_alg = CASE id_token_signed_response_alg WHEN 'RS256' THEN 'ES256' ELSE id_token_signed_response_alg END,
          userinfo_signed_response_alg = CASE userinfo_signed_response_alg WHEN 'RS256' THEN 'ES256' ELSE userinfo_signed_response_alg END,
          version = version + 1, updated_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000
        WHERE fapi2_security_profile = 1 AND (id_token_signed_response_alg = 'RS256' OR userinfo_signed_response_alg = 'RS256');
        """,
        // 22: a refresh token carries when the sign-in its grant came from ends (ms; NULL with offline_access), so a
        // rotation keeps the bound its family began with (a device grant's is its redemption's, not the browser's).
        """
        ALTER TABLE refresh_tokens ADD COLUMN session_ends_at INTEGER;
        """,
        // 23: the single-use records keyed by their primary key alone (WITHOUT ROWID): a record is one b-tree entry
        // and one in the expiry index, not a row, its key's index entry and the expiry's, so a DPoP proof's or an
        // assertion's insert writes about a fifth fewer WAL pages. The records are copied: a proof recorded before
        // the upgrade stays refused.
        """
        CREATE TABLE dpop_proofs_keyed (
            jkt TEXT NOT NULL,
            jti TEXT NOT NULL,
            expires_at INTEGER NOT NULL,
            PRIMARY KEY (jkt, jti)
        ) STRICT, WITHOUT ROWID;
        INSERT INTO dpop_proofs_keyed(jkt, jti, expires_at) SELECT jkt, jti, expires_at FROM dpop_proofs;
        DROP TABLE dpop_proofs;
        ALTER TABLE dpop_proofs_keyed RENAME TO dpop_proofs;
        CREATE INDEX dpop_proofs_by_expiry ON dpop_proofs(expires_at);
        CREATE TABLE client_assertions_keyed (
            client_id TEXT NOT NULL,
            jti TEXT NOT NULL,
            expires_at INTEGER NOT NULL,
            PRIMARY KEY (client_id, jti)
        ) STRICT, WITHOUT ROWID;
        INSERT INTO client_assertions_keyed(client_id, jti, expires_at) SELECT client_id, jti, expires_at FROM client_assertions;
        DROP TABLE client_assertions;
        ALTER TABLE client_assertions_keyed RENAME TO client_assertions;
        CREATE INDEX client_assertions_by_expiry ON client_assertions(expires_at);
        """,
        // 24: an organization's audit events counted on its row (a read of the log's total counted every event), by
        // triggers, so that the events of a node still on the release before (serving through an upgrade) count too.
        """
        ALTER TABLE organizations ADD COLUMN audit_count INTEGER NOT NULL DEFAULT 0;
        UPDATE organizations SET audit_count = (SELECT count(*) FROM audit_events WHERE audit_events.organization_id = organizations.id);
        CREATE TRIGGER audit_events_counted AFTER INSERT ON audit_events WHEN NEW.organization_id IS NOT NULL BEGIN
            UPDATE organizations SET audit_count = audit_count + 1 WHERE id = NEW.organization_id;
        END;
        CREATE TRIGGER audit_events_uncounted AFTER DELETE ON audit_events WHEN OLD.organization_id IS NOT NULL BEGIN
            UPDATE organizations SET audit_count = audit_count - 1 WHERE id = OLD.organization_id;
        END;
        """,
    ]
}
