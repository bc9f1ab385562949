import ArgumentParser
import Common
import Cryptography
import FastCGI
import Foundation
import HTTPCore
import Imaging
import OAuth
import Postgres
import PostgresStore
import SQLiteStore
import Server

struct UserCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "user", abstract: "Manage local users.", subcommands: [Add.self, Set.self, Password.self])

    /// The standard claims behind the profile, phone and address scopes; an empty value clears one.
    struct ProfileOptions: ParsableArguments {
        @Option(name: .customLong("given-name")) var givenName: String?
        @Option(name: .customLong("family-name")) var familyName: String?
        @Option(help: "BCP 47, e.g. en-GB.") var locale: String?
        @Option(help: "IANA time zone, e.g. Europe/Paris.") var zoneinfo: String?
        @Option(name: .customLong("phone-number")) var phoneNumber: String?
        @Option(name: .customLong("street-address")) var streetAddress: String?
        @Option var locality: String?
        @Option var region: String?
        @Option(name: .customLong("postal-code")) var postalCode: String?
        @Option var country: String?
        @Option(name: .customLong("formatted-address")) var formattedAddress: String?

        var isEmpty: Bool {
            [givenName, familyName, locale, zoneinfo, phoneNumber, streetAddress, locality, region, postalCode, country, formattedAddress]
                .allSatisfy { $0 == nil }
        }

        func apply(to p: inout UserProfile) {
            func set(_ value: String?, _ field: inout String?) { if let value { field = value.isEmpty ? nil : value } }
            set(givenName, &p.givenName)
            set(familyName, &p.familyName)
            set(locale, &p.locale)
            set(zoneinfo, &p.zoneinfo)
            set(phoneNumber, &p.phoneNumber)
            for (key, value) in [("street_address", streetAddress), ("locality", locality), ("region", region), ("postal_code", postalCode),
                                 ("country", country), ("formatted", formattedAddress)] {
                if let value { p.address[key] = value.isEmpty ? nil : value }
            }
        }
    }

    /// The password from standard input, without its line ending; never from an argument (`ps` shows those).
    /// One line ending (LF or CRLF) comes off; text that is not UTF-8 is refused.
    static func readPassword(_ passwordStdin: Bool) throws -> String {
        guard passwordStdin else { throw ValidationError("--password-stdin is required (passwords are never taken as arguments)") }
        var bytes = [UInt8](FileHandle.standardInput.readDataToEndOfFile())
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        guard let password = String(validating: bytes, as: UTF8.self) else { throw ValidationError("the password must be UTF-8 text") }
        return password
    }

    struct Password: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set a user's password, read from standard input; every session of the user ends, as at a sign-out.")
        @OptionGroup var common: Common
        @Argument var username: String
        @Flag(name: .customLong("password-stdin"), help: "Read the password from standard input (required).") var passwordStdin = false
        @Flag(name: .customLong("keep-sessions"), help: "Leave the user's sessions (and the grants bound to them) as they are.")
        var keepSessions = false
        @Flag(name: .customLong("revoke-grants"),
              help: "Also disconnect every app of the user, as the account page does: grants that outlive sessions (offline_access, devices) end too.")
        var revokeGrants = false

        func run() throws {
            let password = try UserCommand.readPassword(passwordStdin)
            let store = try common.openAnyStore()
            let issuer = try store.meta("issuer") ?? "http://localhost"
            let changed = try Provisioning(env: try common.environment(issuer: issuer), store: store)
                .setPassword(username: username, password: password, keepSessions: keepSessions, revokeGrants: revokeGrants)
            printJSON(["user_id": .string(changed.userID), "sessions_ended": JSON(changed.sessionsEnded),
                       "apps_disconnected": JSON(changed.appsDisconnected)])
        }
    }

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set a user's profile claims (profile, phone and address scopes).")
        @OptionGroup var common: Common
        @Argument var username: String
        @OptionGroup var profile: ProfileOptions

        func run() throws {
            let store = try common.openAnyStore()
            let issuer = try store.meta("issuer") ?? "http://localhost"
            let stored = try Provisioning(env: try common.environment(issuer: issuer), store: store).setProfile(username: username) { profile.apply(to: &$0) }
            printJSON(stored.json)
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a local user; the password is read from standard input.")
        @OptionGroup var common: Common
        @Argument var username: String
        @Option var email: String?
        @Option var name: String?
        @Flag(name: .customLong("password-stdin"), help: "Read the password from standard input (required).") var passwordStdin = false
        @OptionGroup var profile: ProfileOptions

        func run() throws {
            let password = try UserCommand.readPassword(passwordStdin)
            let store = try common.openAnyStore()
            let issuer = try store.meta("issuer") ?? "http://localhost"
            let provisioning = Provisioning(env: try common.environment(issuer: issuer), store: store)
            var check = UserProfile()
            profile.apply(to: &check)
            if let problem = check.problems().first { throw ValidationError("\(problem.field) \(problem.message)") }
            let id = try provisioning.addUser(username: username, email: email, name: name, password: password)
            if !profile.isEmpty { try provisioning.setProfile(username: username) { profile.apply(to: &$0) } }
            printJSON(["user_id": .string(id)])
        }
    }
}
