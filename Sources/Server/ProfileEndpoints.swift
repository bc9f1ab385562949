import Common
import HTTPCore
import OAuth

/// `/api/v1/me/profile`: the signed-in user's own standard claims (OIDC
/// Core §5.1), read and replaced by the profile form on `/account/`.
enum ProfileEndpoints {
    static let fields = ["given_name", "family_name", "locale", "zoneinfo", "phone_number", "address"]

    static func get(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let (_, user) = try UserEndpoints.sessionUser(request, ctx, write: false)
        return Response.json(try ProfileService(env: ctx.env, store: ctx.store).current(userID: user.id).json).noStore()
    }

    /// The body replaces the profile: a field absent, null or empty is cleared.
    static func put(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let (_, user) = try UserEndpoints.sessionUser(request, ctx, write: true)
        let members = try EndpointKit.jsonObject(request)
        let body = JSON.object(members)
        var r = FieldReader(collecting: body)
        for (key, _) in members.lazy.filter({ !fields.contains($0.0) }).prefix(NativeEndpoints.maxNamedMembers) {
            try r.fail(Echo.name(key), "is not a profile field")
        }
        // An empty string clears the field, as null does.
        func text(_ reader: inout FieldReader, _ key: String) throws -> String? { try reader.string(key).flatMap { $0.isEmpty ? nil : $0 } }
        var profile = UserProfile()
        profile.givenName = try text(&r, "given_name")
        profile.familyName = try text(&r, "family_name")
        profile.locale = try text(&r, "locale")
        profile.zoneinfo = try text(&r, "zoneinfo")
        profile.phoneNumber = try text(&r, "phone_number")
        var errors = r.errors
        if let address = body["address"], !address.isNull {
            if let parts = address.objectValue {
                var a = FieldReader(collecting: address, prefix: "address.")
                var unknown = 0
                for (key, _) in parts {
                    guard UserProfile.addressFields.contains(key) else {
                        unknown += 1
                        if unknown <= NativeEndpoints.maxNamedMembers { try a.fail(Echo.name(key), "is not an address field") }
                        continue
                    }
                    profile.address[key] = try text(&a, key)
                }
                errors += a.errors
            } else {
                errors.append(FieldError("address", "must be an object"))
            }
        }
        if !errors.isEmpty { throw RegistryError.invalid(errors) }
        let stored = try ProfileService(env: ctx.env, store: ctx.store).update(userID: user.id, actor: user.id, surface: "account",
                                                                                   limits: ctx.guards) { $0 = profile }
        return Response.json(stored.json).noStore()
    }
}
