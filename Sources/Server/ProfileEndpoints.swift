import Common
import HTTPCore
import OAuth

/// `/api/v1/me/profile`: the signed-in user's own standard claims (OIDC
/// Core §5.1), read and replaced by the profile form on `/account/`.
enum ProfileEndpoints {
    static let fields = ["given_name", "family_name", "locale", "zoneinfo", "phone_number", "address"]

    static func get(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let (_, user) = try UserEndpoints.sessionUser(request, ctx, write: false)
        return UserEndpoints.noStore(.json(try ProfileService(env: ctx.env, store: ctx.store).current(userID: user.id).json))
    }

    /// The body replaces the profile: a field absent, null or empty is cleared.
    static func put(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let (_, user) = try UserEndpoints.sessionUser(request, ctx, write: true)
        let members = try EndpointKit.jsonObject(request)
        var errors: [FieldError] = []
        var profile = UserProfile()
        func text(_ value: JSON?, _ field: String) -> String? {
            switch value {
            case nil, .null?: return nil
            case let .string(s)?: return s.isEmpty ? nil : s
            default:
                errors.append(FieldError(field, "must be a string"))
                return nil
            }
        }
        let body = JSON.object(members)
        for (key, _) in members where !fields.contains(key) { errors.append(FieldError(key, "is not a profile field")) }
        profile.givenName = text(body["given_name"], "given_name")
        profile.familyName = text(body["family_name"], "family_name")
        profile.locale = text(body["locale"], "locale")
        profile.zoneinfo = text(body["zoneinfo"], "zoneinfo")
        profile.phoneNumber = text(body["phone_number"], "phone_number")
        if let address = body["address"], !address.isNull {
            if let parts = address.objectValue {
                for (key, value) in parts {
                    guard UserProfile.addressFields.contains(key) else { errors.append(FieldError("address.\(key)", "is not an address field")); continue }
                    profile.address[key] = text(value, "address.\(key)")
                }
            } else {
                errors.append(FieldError("address", "must be an object"))
            }
        }
        if !errors.isEmpty { throw RegistryError.invalid(errors) }
        let stored = try ProfileService(env: ctx.env, store: ctx.store).update(userID: user.id, actor: user.id, surface: "account") { $0 = profile }
        return UserEndpoints.noStore(.json(stored.json))
    }
}
