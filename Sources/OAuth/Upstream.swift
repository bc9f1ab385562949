import Common
import Cryptography

/// An OAuth client that Latchkey holds at an upstream identity provider
/// (SPEC 6.5): what it would use to sign people in through Google or Azure AD.
public struct UpstreamClient: Sendable, Equatable {
    public var sysID: String
    public var organizationID: String
    public var name: String
    public var provider: UpstreamProvider
    public var tenantID: String?
    public var clientID: String
    /// The upstream secret, sealed with the KEK when `secretEncrypted`.
    public var secret: [UInt8]
    public var secretEncrypted: Bool
    public var description: String?
    public var clusterRedirectURLs: [(node: String, url: String)]
    public var opswiseGroups: [String]
    public var scopes: [String]
    public var version: Int
    public var createdAt: Int64
    public var updatedAt: Int64

    public init(sysID: String, organizationID: String, name: String, provider: UpstreamProvider, tenantID: String?, clientID: String, secret: [UInt8],
                secretEncrypted: Bool, description: String?, clusterRedirectURLs: [(node: String, url: String)], opswiseGroups: [String],
                scopes: [String], version: Int, createdAt: Int64, updatedAt: Int64) {
        self.sysID = sysID
        self.organizationID = organizationID
        self.name = name
        self.provider = provider
        self.tenantID = tenantID
        self.clientID = clientID
        self.secret = secret
        self.secretEncrypted = secretEncrypted
        self.description = description
        self.clusterRedirectURLs = clusterRedirectURLs
        self.opswiseGroups = opswiseGroups
        self.scopes = scopes
        self.version = version
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    public static func == (a: UpstreamClient, b: UpstreamClient) -> Bool {
        a.sysID == b.sysID && a.organizationID == b.organizationID && a.name == b.name && a.provider == b.provider && a.tenantID == b.tenantID
            && a.clientID == b.clientID && a.secret == b.secret && a.description == b.description
            && a.clusterRedirectURLs.map { "\($0.node) \($0.url)" } == b.clusterRedirectURLs.map { "\($0.node) \($0.url)" }
            && a.opswiseGroups == b.opswiseGroups && a.scopes == b.scopes && a.version == b.version
    }

    /// The provider's endpoints (read-only fields of the record).
    public var authorizationEndpoint: String {
        provider == .google ? "https://accounts.google.com/o/oauth2/v2/auth"
            : "https://login.microsoftonline.com/\(tenantID ?? "common")/oauth2/v2.0/authorize"
    }

    public var tokenEndpoint: String {
        provider == .google ? "https://oauth2.googleapis.com/token" : "https://login.microsoftonline.com/\(tenantID ?? "common")/oauth2/v2.0/token"
    }
}

/// What a create or update supplies; nil means "not given".
public struct UpstreamInput: Sendable {
    public var sysID: String?
    public var retainSysIDs: Bool = true
    public var name: String?
    public var provider: String?
    public var tenantID: String?
    public var clientID: String?
    public var clientSecret: String?
    public var description: String?
    public var clusterRedirectURLs: [(node: String, url: String)]?
    public var opswiseGroups: [String]?
    public var scopes: [String]?
    public var version: Int?

    public init() {}
}

public enum UpstreamError: Error, Equatable {
    case invalid(field: String, message: String)
    case notFoundByName(String)
    case notFoundByID(String)
    case conflict(String)
}

/// The upstream client records: validation, ownership and versions.
public struct UpstreamRegistry {
    let env: Environment
    let store: any UpstreamStorage & AuditStorage

    public init(env: Environment, store: any UpstreamStorage & AuditStorage) {
        self.env = env
        self.store = store
    }

    /// SPEC 7.1: what a caller holding `providers:manage` can make the server
    /// store and send back is bounded (the list has no pages: SPEC 6.5).
    public static let maxRecordsPerOrganization = 100
    public static let maxListEntries = 50
    public static let maxClusterRedirectURLs = 20

    static func isSysID(_ s: String) -> Bool { s.utf8.count == 32 && s.utf8.allSatisfy { Hex.nibble($0) != nil } }

    func validate(_ r: UpstreamClient) throws {
        func bad(_ f: String, _ m: String) -> UpstreamError { .invalid(field: f, message: m) }
        // Bytes bounded too: one character may carry any number of combining marks, and PostgreSQL's index on
        // (organization, name) holds about 2,700 bytes at most (a longer name was a 500 there).
        if r.name.trimmingCharacters().isEmpty || r.name.count > 100 || r.name.utf8.count > 400 {
            throw bad("name", "must be 1..100 characters (at most 400 bytes)")
        }
        if r.name.unicodeScalars.contains(where: { $0.value < 0x20 }) { throw bad("name", "must be printable") }
        if r.clientID.isEmpty || r.clientID.utf8.count > 255 { throw bad("clientId", "must be 1..255 characters") }
        if r.scopes.isEmpty { throw bad("scopes", "must name at least one scope") }
        if r.scopes.count > Self.maxListEntries { throw bad("scopes", "must name at most \(Self.maxListEntries) scopes") }
        if r.opswiseGroups.count > Self.maxListEntries { throw bad("opswiseGroups", "must name at most \(Self.maxListEntries) groups") }
        if r.clusterRedirectURLs.count > Self.maxClusterRedirectURLs {
            throw bad("clusterRedirectUrls", "must hold at most \(Self.maxClusterRedirectURLs) entries")
        }
        if r.scopes.contains(where: { $0.isEmpty || $0.utf8.count > 255 || $0.contains(" ") }) { throw bad("scopes", "must be scope names without spaces") }
        if let problem = r.description.flatMap(ClientSpec.descriptionLengthProblem) { throw bad("description", problem) }
        if r.provider == .google && r.tenantID != nil { throw bad("tenantId", "applies to Azure AD only") }
        if let t = r.tenantID, t.isEmpty || t.utf8.count > 64 || !t.utf8.allSatisfy({ Hex.nibble($0) != nil || $0 == 45 || $0 == 46 || ($0 >= 97 && $0 <= 122) || ($0 >= 65 && $0 <= 90) }) {
            throw bad("tenantId", "must be a tenant id or domain")
        }
        for (i, entry) in r.clusterRedirectURLs.enumerated() {
            if entry.node.isEmpty || entry.node.utf8.count > 255 { throw bad("clusterRedirectUrls[\(i)].clusterNode", "must be 1..255 characters") }
            if let p = URIRules.webURIProblem(entry.url) { throw bad("clusterRedirectUrls[\(i)].redirectUrl", p) }
            if entry.url.utf8.count > 2048 { throw bad("clusterRedirectUrls[\(i)].redirectUrl", "must be at most 2048 bytes") }
        }
        if r.opswiseGroups.contains(where: { $0.isEmpty || $0.utf8.count > 255 }) { throw bad("opswiseGroups", "must be 1..255 characters each") }
    }

    func seal(_ secret: String) throws -> ([UInt8], Bool) {
        guard !secret.isEmpty, secret.utf8.count <= 1024 else { throw UpstreamError.invalid(field: "clientSecret", message: "must be 1..1024 characters") }
        if let kek = env.kek { return (try SealedBox.seal(Array(secret.utf8), key: kek), true) }
        return (Array(secret.utf8), false)
    }

    public func create(_ input: UpstreamInput, caller: Caller) throws -> UpstreamClient {
        guard let name = input.name else { throw UpstreamError.invalid(field: "name", message: "is required") }
        guard let rawProvider = input.provider else { throw UpstreamError.invalid(field: "provider", message: "is required") }
        guard let provider = UpstreamProvider(parsing: rawProvider) else { throw UpstreamError.invalid(field: "provider", message: "must be Azure AD or Google") }
        guard let clientID = input.clientID else { throw UpstreamError.invalid(field: "clientId", message: "is required") }
        guard let secret = input.clientSecret else { throw UpstreamError.invalid(field: "clientSecret", message: "is required") }
        guard let scopes = input.scopes, !scopes.isEmpty else { throw UpstreamError.invalid(field: "scopes", message: "is required and must not be empty") }
        var sysID = Hex.encode(env.random(16))
        if input.retainSysIDs, let given = input.sysID {
            guard UpstreamRegistry.isSysID(given) else { throw UpstreamError.invalid(field: "sysId", message: "must be 32 hexadecimal characters") }
            sysID = given.lowercased()
        }
        let (sealed, encrypted) = try seal(secret)
        let now = env.now()
        let record = UpstreamClient(sysID: sysID, organizationID: caller.organizationID, name: name, provider: provider,
                                    tenantID: provider == .azureAD ? (input.tenantID ?? "common") : input.tenantID, clientID: clientID,
                                    secret: sealed, secretEncrypted: encrypted, description: input.description,
                                    clusterRedirectURLs: input.clusterRedirectURLs ?? [], opswiseGroups: input.opswiseGroups ?? [],
                                    scopes: scopes, version: 1, createdAt: now, updatedAt: now)
        try validate(record)
        return try store.write {
            if try store.upstream(organizationID: caller.organizationID, sysID: sysID) != nil { throw UpstreamError.conflict("An OAuth Client with id \"\(sysID)\" already exists.") }
            if try store.upstream(organizationID: caller.organizationID, name: name) != nil {
                throw UpstreamError.conflict("An OAuth Client with name \"\(name)\" already exists.")
            }
            if try store.upstreamCount(organizationID: caller.organizationID) >= Self.maxRecordsPerOrganization {
                throw UpstreamError.conflict("The organization holds \(Self.maxRecordsPerOrganization) OAuth Clients, the most it may; delete one first.")
            }
            try store.insertUpstream(record)
            try audit(caller, "upstream_client.created", sysID, name)
            return record
        }
    }

    /// Identified by `sysId`, else by `name`. Omitted fields keep their value
    /// (the secret is write-only, so an export can be re-imported). The
    /// write is conditional on the version read: another node's commit in
    /// between makes a write that named a `version` stale (409), and one
    /// that named none starts over from the committed record.
    public func update(_ input: UpstreamInput, caller: Caller) throws -> UpstreamClient {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try updateOnce(input, caller: caller)
            } catch is ChangedMeanwhile where input.version == nil && attempt < 5 {
                continue
            } catch is ChangedMeanwhile {
                throw UpstreamError.conflict("The OAuth Client was changed meanwhile; read it again.")
            }
        }
    }

    private struct ChangedMeanwhile: Error {}

    private func updateOnce(_ input: UpstreamInput, caller: Caller) throws -> UpstreamClient {
        try store.write {
            try holdOrganization(caller)
            var record: UpstreamClient
            if let sysID = input.sysID {
                guard let found = try store.upstream(organizationID: caller.organizationID, sysID: sysID.lowercased()) else {
                    throw UpstreamError.notFoundByID(sysID)
                }
                record = found
            } else if let name = input.name {
                guard let found = try store.upstream(organizationID: caller.organizationID, name: name) else { throw UpstreamError.notFoundByName(name) }
                record = found
            } else {
                throw UpstreamError.invalid(field: "sysId", message: "or name is required to identify the OAuth Client")
            }
            if let v = input.version, v != record.version {
                throw UpstreamError.conflict("The OAuth Client was changed since version \(v); it is at version \(record.version).")
            }
            if let raw = input.provider {
                guard let p = UpstreamProvider(parsing: raw) else { throw UpstreamError.invalid(field: "provider", message: "must be Azure AD or Google") }
                guard p == record.provider else { throw UpstreamError.invalid(field: "provider", message: "cannot change after create") }
            }
            if let name = input.name, name != record.name {
                if try store.upstream(organizationID: caller.organizationID, name: name) != nil {
                    throw UpstreamError.conflict("An OAuth Client with name \"\(name)\" already exists.")
                }
                record.name = name
            }
            if let v = input.tenantID { record.tenantID = v }
            if let v = input.clientID { record.clientID = v }
            if let v = input.clientSecret { (record.secret, record.secretEncrypted) = try seal(v) }
            if let v = input.description { record.description = v }
            if let v = input.clusterRedirectURLs { record.clusterRedirectURLs = v }
            if let v = input.opswiseGroups { record.opswiseGroups = v }
            if let v = input.scopes { record.scopes = v }
            record.version += 1
            record.updatedAt = env.now()
            try validate(record)
            guard try store.updateUpstream(record, from: record.version - 1) else { throw ChangedMeanwhile() }
            try audit(caller, "upstream_client.updated", record.sysID, record.name)
            return record
        }
    }

    public func find(name: String?, sysID: String?, caller: Caller) throws -> UpstreamClient {
        try store.read {
            if let sysID {
                guard let r = try store.upstream(organizationID: caller.organizationID, sysID: sysID.lowercased()) else {
                    throw UpstreamError.notFoundByID(sysID)
                }
                return r
            }
            guard let name, let r = try store.upstream(organizationID: caller.organizationID, name: name) else {
                throw UpstreamError.notFoundByName(name ?? "")
            }
            return r
        }
    }

    public func delete(name: String?, sysID: String?, caller: Caller) throws {
        try store.write {
            try holdOrganization(caller)
            let r = try find(name: name, sysID: sysID, caller: caller)
            // Deleted meanwhile by a racing request: not found, and no second audit row (review, session 28).
            guard try store.deleteUpstream(organizationID: r.organizationID, sysID: r.sysID) else {
                throw sysID.map(UpstreamError.notFoundByID) ?? UpstreamError.notFoundByName(name ?? "")
            }
            try audit(caller, "upstream_client.deleted", r.sysID, r.name)
        }
    }

    public func list(caller: Caller) throws -> [UpstreamClient] {
        try store.read { try store.upstreams(organizationID: caller.organizationID) }
    }

    /// The organization's row first (PostgreSQL: `FOR UPDATE`, as a create takes it before its insert): the audit
    /// event's count takes it at the end of the write, and a rename or delete holding its name's index entry while
    /// a create of that name held the organization waited for each other until PostgreSQL's deadlock timeout
    /// (review of the change, session 34).
    private func holdOrganization(_ caller: Caller) throws {
        _ = try store.upstreamCount(organizationID: caller.organizationID)
    }

    func audit(_ caller: Caller, _ action: String, _ target: String, _ name: String) throws {
        try store.appendAudit(AuditEvent(organizationID: caller.organizationID, actor: caller.client.clientID, action: action, target: target,
                                         surface: caller.surface, requestID: caller.requestID, details: ["name": .string(name)], createdAt: env.now()))
    }
}
