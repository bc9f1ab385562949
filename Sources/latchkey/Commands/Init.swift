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

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create the schema, the first signing key, an organization and its primary client.")
    @OptionGroup var common: Common
    @Option(help: "Issuer URL (env LATCHKEY_ISSUER).") var issuer: String?
    @Option(help: "Name of the first organization.") var org: String = "Default"
    @Option(name: .customLong("client-limit"), help: "Maximum clients of the organization.") var clientLimit: Int = Provisioning.defaultClientLimit
    @Option(help: "Signing algorithm of the first key: ES256, RS256 or EdDSA.") var alg: String = "ES256"

    func run() throws {
        guard let raw = issuer ?? common.env["LATCHKEY_ISSUER"] else { throw ValidationError("--issuer (or LATCHKEY_ISSUER) is required") }
        let issuer = try validatedIssuer(raw)
        guard let algorithm = SignatureAlgorithm(rawValue: alg) else { throw ValidationError("--alg must be ES256, RS256 or EdDSA") }
        let store = try common.openAnyStore(creating: true)
        let result = try Provisioning(env: try common.environment(issuer: issuer), store: store)
            .initialize(issuer: issuer, organizationName: org, clientLimit: clientLimit, algorithm: algorithm)
        printJSON(result.json)
    }
}
