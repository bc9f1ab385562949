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

struct Org: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage organizations.", subcommands: [Create.self, Set.self, ResetPrimary.self])

    /// SPEC 10.1: whether anonymous dynamic registrations land in this organization.
    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change an organization's settings.")
        @OptionGroup var common: Common
        @Argument(help: "Organization id (org-...).") var organizationID: String
        @Option(name: .customLong("open-registration"), help: "on: anonymous dynamic registrations land here (one organization at a time); off.")
        var openRegistration: String

        func run() throws {
            guard ["on", "off"].contains(openRegistration) else { throw ValidationError("--open-registration must be on or off") }
            let store = try common.openAnyStore()
            try ClientRegistration.setOpen(openRegistration == "on", organizationID: organizationID, store: store)
            printJSON(["organization_id": .string(organizationID), "open_registration": .bool(openRegistration == "on")])
        }
    }

    /// SPEC 6.0: the operator's way back in when an organization's primary
    /// client lost its secret (or, on an old version, its grant or scopes).
    struct ResetPrimary: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reset-primary",
            abstract: "Give the organization's primary client back its grant and scopes and a new secret (printed once).")
        @OptionGroup var common: Common
        @Argument(help: "Organization id (org-...).") var organizationID: String

        func run() throws {
            let store = try common.openAnyStore()
            guard let issuer = try store.meta("issuer") else { throw CLIError(ProvisioningError.notInitialized.description) }
            let result = try Provisioning(env: try common.environment(issuer: issuer), store: store).resetPrimary(organizationID: organizationID)
            printJSON(result.json)
        }
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an organization with its own primary client.")
        @OptionGroup var common: Common
        @Argument(help: "Organization name.") var name: String
        @Option(name: .customLong("client-limit")) var clientLimit: Int = Provisioning.defaultClientLimit

        func validate() throws {
            guard (1...100_000).contains(clientLimit) else { throw ValidationError("--client-limit must be 1..100000") }
        }

        func run() throws {
            let store = try common.openAnyStore()
            guard let issuer = try store.meta("issuer") else { throw CLIError(ProvisioningError.notInitialized.description) }
            let result = try Provisioning(env: try common.environment(issuer: issuer), store: store).createOrganization(name: name, clientLimit: clientLimit)
            printJSON(result.json)
        }
    }
}
