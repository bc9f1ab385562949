/// Scope descriptions shown on the consent screen.
public enum ScopeCatalog {
    public static let descriptions: [String: String] = [
        "openid": "Sign you in and know who you are",
        "profile": "See your name and username",
        "email": "See your email address",
        "phone": "See your phone number",
        "address": "See your postal address",
        "offline_access": "Stay connected when you are not using it",
        "connections:read": "See the apps you have connected",
        "connections:write": "Disconnect apps you have connected",
        "gov.user.oauth.authorize": "Approve apps on your behalf",
        "gov.user.oauth.connection:read": "See the apps you have connected",
        "gov.user.oauth.connection:write": "Disconnect apps you have connected",
    ]

    public static func describe(_ scope: String) -> String { descriptions[scope] ?? "Access “\(scope)”" }
}
