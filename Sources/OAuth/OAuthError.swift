import Common

/// An error of the OAuth endpoints (RFC 6749 §5.2, RFC 6750 §3.1,
/// RFC 7009 §2.2.1). `description` is constant public text and never
/// contains user input; `detail` is for the log only.
public struct OAuthError: Error, Equatable, CustomStringConvertible {
    public let code: String
    public let status: Int
    public let publicDescription: String
    public let detail: String
    public var headers: [(String, String)]
    public let location: String
    /// An `invalid_token` refusal of a genuine, active token whose client was
    /// deleted since (the integration surface answers it as its source does):
    /// the token's claims, so that its DPoP binding is checked before that is said.
    public private(set) var deletedClientsToken: AccessTokenClaims?
    public var tokenOfDeletedClient: Bool { deletedClientsToken != nil }

    public init(_ code: String, status: Int, _ description: String, detail: String = "", headers: [(String, String)] = [],
                fileID: String = #fileID, line: Int = #line) {
        self.code = code
        self.status = status
        self.publicDescription = description
        self.detail = detail
        self.headers = headers
        self.location = "\(fileID):\(line)"
    }

    public static func == (lhs: OAuthError, rhs: OAuthError) -> Bool { lhs.code == rhs.code && lhs.status == rhs.status }
    public var description: String { "\(code) (\(status)) at \(location)\(detail.isEmpty ? "" : ": \(detail)")" }

    func ofDeletedClient(_ claims: AccessTokenClaims) -> OAuthError {
        var refusal = self
        refusal.deletedClientsToken = claims
        return refusal
    }

    /// The body the OAuth endpoints answer with (RFC 6749 §5.2).
    public var json: JSON { ["error": .string(code), "error_description": .string(publicDescription)] }

    public static func invalidRequest(_ description: String = "The request is malformed.", detail: String = "", fileID: String = #fileID, line: Int = #line) -> OAuthError {
        OAuthError("invalid_request", status: 400, description, detail: detail, fileID: fileID, line: line)
    }
    public static func invalidClient(_ description: String = "Client authentication failed.", basic: Bool = false, detail: String = "", fileID: String = #fileID, line: Int = #line) -> OAuthError {
        OAuthError("invalid_client", status: 401, description, detail: detail,
                   headers: basic ? [("WWW-Authenticate", "Basic realm=\"latchkey\", charset=\"UTF-8\"")] : [], fileID: fileID, line: line)
    }
    public static func invalidGrant(_ description: String = "The grant is invalid, expired or revoked.", detail: String = "", fileID: String = #fileID, line: Int = #line) -> OAuthError {
        OAuthError("invalid_grant", status: 400, description, detail: detail, fileID: fileID, line: line)
    }
    public static func unauthorizedClient(_ description: String = "The client is not allowed to use this grant type.", fileID: String = #fileID, line: Int = #line) -> OAuthError {
        OAuthError("unauthorized_client", status: 400, description, fileID: fileID, line: line)
    }
    public static func unsupportedGrantType(fileID: String = #fileID, line: Int = #line) -> OAuthError {
        OAuthError("unsupported_grant_type", status: 400, "The grant type is not supported.", fileID: fileID, line: line)
    }
    /// RFC 9449 §11.1: a DPoP proof seen before.
    public static var proofReplayed: OAuthError { OAuthError("invalid_dpop_proof", status: 400, "The DPoP proof is invalid: proof replayed.") }
    /// FAPI 2.0 §5.4 (`Client.allows`): a FAPI 2.0 client's proof in RS256.
    public static var proofAlgorithmRefused: OAuthError {
        OAuthError("invalid_dpop_proof", status: 400, "A FAPI 2.0 client's DPoP proofs are ES256 or EdDSA (FAPI 2.0 §5.4).")
    }
    public static func invalidScope(_ description: String = "The requested scope is invalid or exceeds what the client may request.", fileID: String = #fileID, line: Int = #line) -> OAuthError {
        OAuthError("invalid_scope", status: 400, description, fileID: fileID, line: line)
    }
    /// RFC 6750 §3.1: a missing, malformed, expired or revoked bearer token.
    /// `description`: constant text (it also goes into `WWW-Authenticate`).
    public static func invalidToken(missing: Bool = false, description: String = "The access token is invalid or expired.",
                                    fileID: String = #fileID, line: Int = #line) -> OAuthError {
        let challenge = missing ? "Bearer realm=\"latchkey\"" : "Bearer realm=\"latchkey\", error=\"invalid_token\", error_description=\"\(description)\""
        return OAuthError("invalid_token", status: 401, missing ? "An access token is required." : description,
                          headers: [("WWW-Authenticate", challenge)], fileID: fileID, line: line)
    }
    /// RFC 6750 §3.1: the token lacks the scope the resource needs.
    public static func insufficientScope(_ scope: String, fileID: String = #fileID, line: Int = #line) -> OAuthError {
        OAuthError("insufficient_scope", status: 403, "The access token lacks the required scope.",
                   headers: [("WWW-Authenticate", "Bearer realm=\"latchkey\", error=\"insufficient_scope\", scope=\"\(scope)\"")], fileID: fileID, line: line)
    }
}
