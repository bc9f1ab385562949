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
    static let configuration = CommandConfiguration(abstract: "Manage organizations.", subcommands: [Create.self, ResetPrimary.self])

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

        func run() throws {
            let store = try common.openAnyStore()
            guard let issuer = try store.meta("issuer") else { throw CLIError(ProvisioningError.notInitialized.description) }
            let result = try Provisioning(env: try common.environment(issuer: issuer), store: store).createOrganization(name: name, clientLimit: clientLimit)
            printJSON(result.json)
        }
    }
}
