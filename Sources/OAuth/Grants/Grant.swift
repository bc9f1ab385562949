import Common

/// A token request as the endpoint parsed it (RFC 6749 §3.2): the grant
/// type and the other parameters, each at most once, empty ones dropped.
/// No HTTP in here: a grant reads only these values.
public struct TokenRequest: Sendable {
    public let grantType: String
    public let parameters: [String: String]
    /// The verified DPoP proof sent with the request (RFC 9449 §5), not yet recorded.
    public let proof: DPoPProof?
    /// The thumbprint of its key: what the tokens are bound to.
    public var dpopJKT: String? { proof?.jkt }
    /// A proof came, unverified: a public client named a code or token that
    /// is not its own (`Grant.namesItsOwn`). Nothing may use it.
    public let proofWithheld: Bool

    public init(grantType: String, parameters: [String: String], proof: DPoPProof? = nil, proofWithheld: Bool = false) {
        self.grantType = grantType
        self.parameters = parameters
        self.proof = proof
        self.proofWithheld = proofWithheld
    }

    public subscript(name: String) -> String? { parameters[name] }

    /// A parameter the grant cannot go without (`invalid_request` when absent).
    public func required(_ name: String) throws -> String {
        guard let value = parameters[name] else { throw OAuthError.invalidRequest("\(name) is required.") }
        return value
    }
}

/// One grant of the token endpoint (RFC 6749 §4, §6), as fosite's handlers
/// and node-oidc-provider's grant files are: what a request of its type
/// must carry, its checks and its transaction. `TokenExchange` has already
/// authenticated the client and checked that it registered the grant type.
///
/// Adding a grant: a type conforming to this protocol in this folder, and
/// its line in `TokenExchange.grants`.
public protocol Grant: Sendable {
    /// The `grant_type` it answers.
    var type: GrantType { get }
    /// Whether a public client (no secret) may use it.
    var allowsPublicClients: Bool { get }
    /// Whether it only reads (then the client's authentication and the
    /// grant share one read transaction: one memo check, one snapshot).
    var readsOnly: Bool { get }
    /// The token response for an authenticated client allowed this grant.
    func exchange(_ request: TokenRequest, client: Client, service: TokenService) throws -> TokenResponse
    /// Whether the code or token the request names exists and is the
    /// client's (true for a grant that names none, or a request that names
    /// nothing: the grant refuses it). A public client's DPoP proof is
    /// verified only then: anyone may name a public client, and a made-up
    /// code cost a signature check under a key of the caller's choosing
    /// (review, session 25).
    func namesItsOwn(_ request: TokenRequest, client: Client, service: TokenService) throws -> Bool
    /// After the response is decided (outside any transaction): bookkeeping
    /// such as noting the client's use.
    func issued(to client: Client, service: TokenService) throws
}

extension Grant {
    public var readsOnly: Bool { false }
    public func namesItsOwn(_ request: TokenRequest, client: Client, service: TokenService) throws -> Bool { true }
    public func issued(to client: Client, service: TokenService) throws {}
}

/// The token endpoint's domain side (RFC 6749 §3.2): finds the grant,
/// authenticates the client first (an unauthenticated caller learns nothing
/// about codes or tokens), checks once that the client registered the grant
/// type, and lets the grant answer.
public struct TokenExchange {
    /// Every grant the token endpoint knows, in the order error messages list them.
    static let grantList: [any Grant] = [
        AuthorizationCodeGrant(),
        RefreshTokenGrant(),
        ClientCredentialsGrant(),
        DeviceCodeGrant(),
    ]

    /// The grants by `grant_type`.
    public static let grants: [GrantType: any Grant] = Dictionary(uniqueKeysWithValues: grantList.map { ($0.type, $0) })

    let service: TokenService
    let authenticator: ClientAuthenticator

    public init(service: TokenService, authenticator: ClientAuthenticator) {
        self.service = service
        self.authenticator = authenticator
    }

    /// `proof`, when the request carries a DPoP proof: checks it (called once
    /// the client is authenticated). Its jti is recorded (RFC 9449 §11.1) by
    /// the transaction that uses it: a writing grant's own, once the code,
    /// refresh token or device code has proved to be the client's (`TokenService.useProof`),
    /// so a request naming a public client and a made-up code stores
    /// nothing (attacker review); for client_credentials, in a write of its
    /// own before the token is signed.
    public func exchange(_ unbound: TokenRequest, credentials: PresentedCredentials,
                         proof: (() throws -> DPoPProof)? = nil) throws -> TokenResponse {
        guard let grant = TokenExchange.grants[GrantType(rawValue: unbound.grantType)] else {
            throw OAuthError.unsupportedGrantType()
        }
        let store = service.store
        let authenticate = {
            let client = try authenticator.authenticate(credentials, allowPublic: grant.allowsPublicClients)
            guard client.grantTypes.contains(grant.type) else { throw OAuthError.unauthorizedClient() }
            // RFC 9449 §5.2 dpop_bound_access_tokens (and FAPI 2.0): such a client's tokens are always bound.
            if client.mustBindTokens && proof == nil {
                throw OAuthError("invalid_dpop_proof", status: 400, "This client's tokens must be bound to a DPoP key: send a DPoP proof.")
            }
            return client
        }
        let client: Client
        let response: TokenResponse
        if credentials.writesOnUse || proof != nil {
            // An assertion's jti and a proof's jti are written in transactions of their own, outside any read.
            client = credentials.writesOnUse ? try authenticate() : try store.read(authenticate)
            let verifies = try proof == nil || !client.isPublic || store.read { try grant.namesItsOwn(unbound, client: client, service: service) }
            let request = TokenRequest(grantType: unbound.grantType, parameters: unbound.parameters, proof: verifies ? try proof?() : nil,
                                       proofWithheld: !verifies)
            // A proof in an algorithm the client may not use is refused before its jti is spent.
            if let proof = request.proof, !client.allows(proof.algorithm) { throw OAuthError.proofAlgorithmRefused }
            if grant.readsOnly {
                if request.proof != nil { guard try store.writeOne({ try service.useProof(request) }) else { throw OAuthError.proofReplayed } }
                response = try store.read { try grant.exchange(request, client: client, service: service) }
            } else {
                response = try grant.exchange(request, client: client, service: service)
            }
        } else if grant.readsOnly {
            (client, response) = try store.read {
                let client = try authenticate()
                return (client, try grant.exchange(unbound, client: client, service: service))
            }
        } else {
            client = try store.read(authenticate)
            response = try grant.exchange(unbound, client: client, service: service)
        }
        try grant.issued(to: client, service: service)
        return response
    }
}
