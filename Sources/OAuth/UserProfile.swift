import Common

/// The OpenID Connect standard claims behind the `profile`, `phone` and
/// `address` scopes (OIDC Core §5.1) beyond a user's name and email: set by
/// an operator (`latchkey user add/set`), kept in a table of their own.
public struct UserProfile: Sendable, Equatable {
    public var givenName: String?
    public var familyName: String?
    /// A BCP 47 language tag, e.g. `en-GB`.
    public var locale: String?
    /// An IANA time zone, e.g. `Europe/Paris`.
    public var zoneinfo: String?
    /// E.164 preferred, e.g. `+33 1 23 45 67 89`.
    public var phoneNumber: String?
    /// OIDC Core §5.1.1: formatted, street_address, locality, region, postal_code, country.
    public var address: [String: String]

    public static let addressFields = ["formatted", "street_address", "locality", "region", "postal_code", "country"]

    public init(givenName: String? = nil, familyName: String? = nil, locale: String? = nil, zoneinfo: String? = nil, phoneNumber: String? = nil,
                address: [String: String] = [:]) {
        (self.givenName, self.familyName, self.locale, self.zoneinfo, self.phoneNumber, self.address) =
            (givenName, familyName, locale, zoneinfo, phoneNumber, address)
    }

    public var isEmpty: Bool { self == UserProfile() }

    public var json: JSON {
        var members: [(String, JSON)] = []
        for (key, value) in [("given_name", givenName), ("family_name", familyName), ("locale", locale), ("zoneinfo", zoneinfo),
                             ("phone_number", phoneNumber)] {
            if let value { members.append((key, .string(value))) }
        }
        let address = UserProfile.addressFields.compactMap { key in self.address[key].map { (key, JSON.string($0)) } }
        if !address.isEmpty { members.append(("address", .object(address))) }
        return .object(members)
    }

    public init(json: JSON) {
        self.init(givenName: json["given_name"]?.stringValue, familyName: json["family_name"]?.stringValue, locale: json["locale"]?.stringValue,
                  zoneinfo: json["zoneinfo"]?.stringValue, phoneNumber: json["phone_number"]?.stringValue)
        for key in UserProfile.addressFields { if let value = json["address"]?[key]?.stringValue { address[key] = value } }
    }

    /// Field errors (JSON names): lengths, printable text, and the shapes of locale, zoneinfo and phone number.
    public func problems() -> [FieldError] {
        var errors: [FieldError] = []
        var texts = [("given_name", givenName), ("family_name", familyName), ("locale", locale), ("zoneinfo", zoneinfo), ("phone_number", phoneNumber)]
        texts += UserProfile.addressFields.map { ("address.\($0)", address[$0]) }
        for (field, value) in texts {
            guard let value else { continue }
            if value.isEmpty || value.utf8.count > 255 || !ClientSpec.isDisplaySafe(value) {
                errors.append(FieldError(field, "must be 1..255 bytes of printable text"))
            }
        }
        func all(_ s: String, _ allowed: (UInt8) -> Bool) -> Bool { s.utf8.allSatisfy(allowed) }
        func alnum(_ b: UInt8) -> Bool { (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122) }
        if let locale, !(all(locale) { alnum($0) || $0 == 45 } && locale.count <= 35 && (locale.split(separator: "-").first?.count ?? 0) >= 2) {
            errors.append(FieldError("locale", "must be a BCP 47 language tag such as en-GB"))
        }
        if let zoneinfo, !(all(zoneinfo) { alnum($0) || [43, 45, 47, 95].contains($0) } && (zoneinfo.contains("/") || zoneinfo == "UTC")) {
            errors.append(FieldError("zoneinfo", "must be an IANA time zone such as Europe/Paris"))
        }
        if let phoneNumber, !(all(phoneNumber) { ($0 >= 48 && $0 <= 57) || [32, 40, 41, 43, 45, 46].contains($0) }
                              && phoneNumber.utf8.filter({ $0 >= 48 && $0 <= 57 }).count >= 3) {
            errors.append(FieldError("phone_number", "must be a telephone number such as +33 1 23 45 67 89"))
        }
        return errors
    }

    /// OIDC Core §5.4: the claims each granted scope releases, in addition
    /// to `sub`: `profile` (name, given_name, family_name,
    /// preferred_username, locale, zoneinfo), `email`, `phone`
    /// (phone_number, phone_number_verified), `address`.
    public static func claims(_ user: User, _ profile: UserProfile?, scope: [String]) -> [(String, JSON)] {
        var claims: [(String, JSON)] = []
        let p = profile ?? UserProfile()
        if scope.contains("profile") {
            claims.append(("preferred_username", .string(user.username)))
            if let name = user.name { claims.append(("name", .string(name))) }
            for (key, value) in [("given_name", p.givenName), ("family_name", p.familyName), ("locale", p.locale), ("zoneinfo", p.zoneinfo)] {
                if let value { claims.append((key, .string(value))) }
            }
        }
        if scope.contains("email"), let email = user.email {
            claims.append(("email", .string(email)))
            claims.append(("email_verified", false))
        }
        if scope.contains("phone"), let phone = p.phoneNumber {
            claims.append(("phone_number", .string(phone)))
            claims.append(("phone_number_verified", false))
        }
        if scope.contains("address"), let address = p.json["address"] { claims.append(("address", address)) }
        return claims
    }

    /// Whether `scope` releases any claim of the profile table (then it is read).
    public static func needed(for scope: [String]) -> Bool { scope.contains("profile") || scope.contains("phone") || scope.contains("address") }
}

/// Changes a user's standard claims after their rules, audited: the
/// operator's `latchkey user set` and the user's own profile form.
public struct ProfileService {
    let env: Environment
    let store: Store

    public init(env: Environment, store: Store) {
        self.env = env
        self.store = store
    }

    public func current(userID: String) throws -> UserProfile { try store.read { try store.userProfile(userID: userID) } ?? UserProfile() }

    /// A change that changes nothing writes nothing and is not audited: the
    /// profile form saved again and again (10 a second per address at nginx's
    /// limit) was a permanent audit row each (review, session 26). `limits`:
    /// the user's own change, at most `AbuseGuards.profileChangesPerHour`
    /// (then `TooManyFailures`, 429), so two values saved in turn are bounded
    /// too (review, session 28); the operator's CLI is not limited.
    /// A change is counted once committed (a transaction run again after a
    /// serialization failure, or one that failed, counts nothing).
    @discardableResult
    public func update(userID: String, actor: String, surface: String, limits: AbuseGuards? = nil,
                       _ change: (inout UserProfile) -> Void) throws -> UserProfile {
        let key = FailureLimiter.Key.accountAnywhere(userID)
        let (profile, changed) = try store.write { () throws -> (UserProfile, Bool) in
            let stored = try store.userProfile(userID: userID)
            var profile = stored ?? UserProfile()
            change(&profile)
            let problems = profile.problems()
            guard problems.isEmpty else { throw RegistryError.invalid(problems) }
            if stored == profile { return (profile, false) }
            if let wait = limits?.profileChanges.retryAfter(key, now: env.now()) { throw TooManyFailures(retryAfterSeconds: wait, changes: true) }
            try store.setUserProfile(userID: userID, profile: profile)
            try store.appendAudit(AuditEvent(organizationID: nil, actor: actor, action: "user.profile_set", target: userID, surface: surface,
                                             requestID: nil, createdAt: env.now()))
            return (profile, true)
        }
        if changed { limits?.profileChanges.recordFailure([key], now: env.now()) }
        return profile
    }
}
