import Common
import OAuth
import PostgresStore
import SQLiteStore
import TestSupport
import Testing

/// OIDC Core §5.1 and §5.4: the standard claims behind the profile, phone
/// and address scopes, their rules, and which scope releases which claim.
@Suite struct UserProfileTests {
    static let full = UserProfile(givenName: "Alice", familyName: "Liddell", locale: "en-GB", zoneinfo: "Europe/London",
                                  phoneNumber: "+44 20 7946 0958",
                                  address: ["street_address": "1 Rabbit Hole", "locality": "Oxford", "postal_code": "OX1 1AA", "country": "GB"])

    @Test(arguments: [
        ("locale", UserProfile(locale: "english please")),
        ("locale", UserProfile(locale: "e")),
        ("zoneinfo", UserProfile(zoneinfo: "somewhere")),
        ("phone_number", UserProfile(phoneNumber: "call me")),
        ("given_name", UserProfile(givenName: "evil\u{202E}")),
        ("address.locality", UserProfile(address: ["locality": String(repeating: "x", count: 256)])),
    ] as [(String, UserProfile)])
    func aBadValueIsAFieldError(_ field: String, _ profile: UserProfile) {
        #expect(profile.problems().map(\.field) == [field])
    }

    @Test func aFullProfileIsValidAndRoundTripsThroughJSON() {
        #expect(Self.full.problems().isEmpty)
        #expect(UserProfile(json: Self.full.json) == Self.full)
    }

    @Test(arguments: [
        (["openid"], [String]()),
        (["openid", "profile"], ["preferred_username", "name", "given_name", "family_name", "locale", "zoneinfo"]),
        (["openid", "email"], ["email", "email_verified"]),
        (["openid", "phone"], ["phone_number", "phone_number_verified"]),
        (["openid", "address"], ["address"]),
    ] as [([String], [String])])
    func eachScopeReleasesItsClaims(_ scope: [String], _ names: [String]) {
        let user = User(id: "usr-1", username: "alice", email: "alice@example.com", name: "Alice Liddell", passwordHash: "", createdAt: 0)
        #expect(UserProfile.claims(user, Self.full, scope: scope).map(\.0) == names)
    }

    @Test func theAddressClaimIsTheOIDCObject() {
        let user = User(id: "usr-1", username: "alice", email: nil, name: nil, passwordHash: "", createdAt: 0)
        let address = UserProfile.claims(user, Self.full, scope: ["address"]).first?.1
        #expect(address == ["street_address": "1 Rabbit Hole", "locality": "Oxford", "postal_code": "OX1 1AA", "country": "GB"])
    }

    /// On both stores, through the operator's operation: set, changed, cleared, refused.
    /// A save that changes nothing writes nothing and leaves no audit row
    /// (review, session 26: the profile form saved in a loop was a permanent
    /// row each time); a real change is written and audited once.
    @Test func aSaveThatChangesNothingIsNotWrittenOrAudited() throws {
        let h = try StoreFixture()
        let id = try h.user()
        let service = ProfileService(env: h.env, store: h.store)
        func audited() throws -> Int64 {
            let sql = "SELECT COUNT(*) FROM audit_events WHERE action = 'user.profile_set' AND target = ?"
            if let s = h.store as? SQLiteStore { return try s.read { try s.query(sql, [.text(id)]).first?.int(0) ?? -1 } }
            if let p = h.store as? PostgresStore { return try p.read { try p.query(sql, [.text(id)]).first?.int(0) ?? -1 } }
            return -1
        }
        try service.update(userID: id, actor: id, surface: "account") { $0.givenName = "Alice" }
        #expect(try audited() == 1)
        for _ in 0..<5 { try service.update(userID: id, actor: id, surface: "account") { $0.givenName = "Alice" } }
        #expect(try audited() == 1)
        try service.update(userID: id, actor: id, surface: "account") { $0.givenName = "Alicia" }
        #expect(try audited() == 2)
        #expect(try service.current(userID: id).givenName == "Alicia")
    }

    /// Review, session 28: two values saved in turn were a change and an audit row each, ten a second at nginx's
    /// limit, for good. A user's own changes are bounded per hour (then 429, nothing written); the operator's are not.
    @Test func aUsersOwnChangesAreBoundedPerHour() throws {
        let h = try StoreFixture()
        let id = try h.user()
        let service = ProfileService(env: h.env, store: h.store)
        let guards = AbuseGuards()
        func save(_ name: String) throws { try service.update(userID: id, actor: id, surface: "account", limits: guards) { $0.givenName = name } }
        for i in 0..<AbuseGuards.profileChangesPerHour { try save(i % 2 == 0 ? "A" : "B") }
        #expect(throws: TooManyFailures.self) { try save("C") }
        #expect(try service.current(userID: id).givenName == "B", "nothing written")
        try save("B")  // no change: no write, no count
        try service.update(userID: id, actor: "cli", surface: "cli") { $0.givenName = "Operator" }
        #expect(try service.current(userID: id).givenName == "Operator")
        h.clock.advance(seconds: 3_600)
        try save("D")
        #expect(try service.current(userID: id).givenName == "D")
    }

    @Test func theOperatorSetsAProfileAndBadValuesChangeNothing() throws {
        let h = try StoreFixture()
        let id = try h.user()
        let provisioning = Provisioning(env: h.env, store: h.store)
        try provisioning.setProfile(username: "alice") { $0 = Self.full }
        #expect(try h.store.read { try h.store.userProfile(userID: id) } == Self.full)
        try provisioning.setProfile(username: "alice") { $0.phoneNumber = nil; $0.address["region"] = "Oxfordshire" }
        let changed = try #require(try h.store.read { try h.store.userProfile(userID: id) })
        #expect(changed.phoneNumber == nil && changed.address["region"] == "Oxfordshire" && changed.givenName == "Alice")
        #expect(throws: ProvisioningError.self) { try provisioning.setProfile(username: "alice") { $0.zoneinfo = "nowhere" } }
        #expect(try h.store.read { try h.store.userProfile(userID: id) } == changed)
        #expect(throws: ProvisioningError.self) { try provisioning.setProfile(username: "nobody") { $0.givenName = "X" } }
    }
}
