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
    ]
}
