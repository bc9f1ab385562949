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
    ]
}
