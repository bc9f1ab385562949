/// The checks an authorization request goes through before a code can be
/// issued, each a small named function, shared by every surface that issues
/// codes (`/oauth2/authorize`, the app API's `/auth/code`; PAR and the
/// device flow next). Each surface renders a failed check its own way (an
/// error redirect, a 400 of its own shape); the rules are written here once.
public enum AuthorizationCheck: Error, Equatable, Sendable {
    /// `code_challenge_method` other than S256 (RFC 9700 §2.1.1: no `plain`).
    case challengeMethodUnsupported
    /// A `code_challenge_method` without a `code_challenge`.
    case challengeMissing
    /// A `code_challenge` without a `code_challenge_method`.
    case challengeMethodMissing
    /// Not 43..128 characters of the RFC 7636 §4.1 alphabet.
    case challengeMalformed
    /// A public client without PKCE (RFC 9700 §2.1.1).
    case pkceRequired
    /// A nonce longer than 255 bytes.
    case nonceTooLong
    /// A nonce with bytes outside printable ASCII (where the surface asks for it).
    case nonceNotPrintable
}

public enum AuthorizationChecks {
    /// RFC 7636 §4.3 with S256 only; a public client must send a challenge.
    /// Returns the challenge (nil for a confidential client without PKCE).
    public static func pkce(challenge: String?, method: String?, client: Client) throws(AuthorizationCheck) -> String? {
        if let method, method != "S256" { throw .challengeMethodUnsupported }
        if challenge == nil && method != nil { throw .challengeMissing }
        guard let challenge else {
            if client.isPublic { throw .pkceRequired }
            return nil
        }
        guard method != nil else { throw .challengeMethodMissing }
        guard AuthorizationService.isValidCodeChallenge(challenge) else { throw .challengeMalformed }
        return challenge
    }

    /// OIDC Core §3.1.2.1's nonce, bounded (it is stored and echoed in the ID token).
    public static func nonce(_ nonce: String?, printable: Bool = false) throws(AuthorizationCheck) -> String? {
        guard let nonce else { return nil }
        if nonce.utf8.count > 255 { throw .nonceTooLong }
        if printable && !nonce.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { throw .nonceNotPrintable }
        return nonce
    }

    /// Whether a client may ask a user for `scope`: registered for it, and
    /// not a privileged (management) scope, which no user grants (SPEC 6.3).
    public static func isRequestable(_ scope: String, by client: Client) -> Bool {
        client.scope.contains(scope) && !Scopes.isPrivileged(scope)
    }
}
