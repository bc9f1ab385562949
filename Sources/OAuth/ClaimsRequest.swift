import Common

/// The `claims` request parameter (OIDC Core §5.5): claims a client asks for
/// one by one, for the ID token or the userinfo response.
///
/// Consent speaks in scopes, so a claim asked for this way brings the scope
/// that releases it to the consent screen (when the client may ask for that
/// scope); the user approves the scope, the token response names it, and the
/// claim is released where scope-released claims are (ID token and
/// userinfo). `acr` asked for the ID token is added to it. Claims Latchkey
/// does not hold are left out, as §5.5 allows.
public struct ClaimsRequest: Sendable, Equatable {
    /// Claim names asked for the ID token, and for userinfo.
    public var idToken: [String]
    public var userinfo: [String]
    /// The `acr` values an essential `acr` request accepts (empty: any).
    public var essentialACR: [String]
    /// The user the ID token must be about (`"sub": {"value": …}`, §5.5.1):
    /// no answer for anyone else, whoever is signed in.
    public var subject: String?

    public static let maxParameterBytes = 4096
    public static let maxClaims = 32
    /// The one authentication context Latchkey offers: a password sign-in.
    public static let passwordACR = "1"

    /// Which scope releases a claim (OIDC Core §5.4).
    public static let scopeOfClaim: [String: String] = [
        "name": "profile", "given_name": "profile", "family_name": "profile", "preferred_username": "profile", "locale": "profile",
        "zoneinfo": "profile", "email": "email", "email_verified": "email", "phone_number": "phone", "phone_number_verified": "phone",
        "address": "address",
    ]

    public init(idToken: [String] = [], userinfo: [String] = [], essentialACR: [String] = [], subject: String? = nil) {
        self.idToken = idToken
        self.userinfo = userinfo
        self.essentialACR = essentialACR
        self.subject = subject
    }

    /// Parses the parameter; nil unless it is a JSON object of §5.5's shape
    /// (members `id_token` and `userinfo`, each an object of claim names
    /// mapping to null or `{essential, value, values}`; other members ignored).
    public init?(parameter: String) {
        guard parameter.utf8.count <= ClaimsRequest.maxParameterBytes, let json = try? JSON.parse(Array(parameter.utf8)),
              json.objectValue != nil else { return nil }
        self.init()
        var count = 0
        for (target, keyPath) in [("id_token", \ClaimsRequest.idToken), ("userinfo", \ClaimsRequest.userinfo)] {
            guard let member = json[target], !member.isNull else { continue }
            guard let claims = member.objectValue else { return nil }
            for (name, spec) in claims {
                count += 1
                guard count <= ClaimsRequest.maxClaims, (1...64).contains(name.utf8.count),
                      name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
                if !spec.isNull {
                    guard spec.objectValue != nil else { return nil }
                    if let essential = spec["essential"], essential.boolValue == nil { return nil }
                    if let values = spec["values"], values.arrayValue == nil { return nil }
                }
                if !self[keyPath: keyPath].contains(name) { self[keyPath: keyPath].append(name) }
                if name == "sub", target == "id_token", let value = spec["value"] {
                    guard let subject = value.stringValue else { return nil }
                    self.subject = subject
                }
                if name == "acr", target == "id_token", spec["essential"]?.boolValue == true {
                    essentialACR = ([spec["value"]] + (spec["values"]?.arrayValue ?? []).map { Optional($0) }).compactMap { $0?.stringValue }
                }
            }
        }
    }

    /// The scopes that release the claims asked for, in the order asked.
    public var scopes: [String] {
        var result: [String] = []
        for name in idToken + userinfo {
            if let scope = ClaimsRequest.scopeOfClaim[name], !result.contains(scope) { result.append(scope) }
        }
        return result
    }

    /// Whether an essential `acr` request can be met (§5.5.1.1).
    public var acrSatisfiable: Bool { essentialACR.isEmpty || essentialACR.contains(ClaimsRequest.passwordACR) }

    public var wantsACR: Bool { idToken.contains("acr") }

    /// Stored with the request and the code: the names only.
    public var json: JSON {
        ["id_token": JSON(idToken), "userinfo": JSON(userinfo), "essential_acr": JSON(essentialACR), "sub": JSON(subject)]
    }

    public init?(json: JSON) {
        guard json.objectValue != nil else { return nil }
        func names(_ key: String) -> [String] { (json[key]?.arrayValue ?? []).compactMap(\.stringValue) }
        self.init(idToken: names("id_token"), userinfo: names("userinfo"), essentialACR: names("essential_acr"), subject: json["sub"]?.stringValue)
    }
}
