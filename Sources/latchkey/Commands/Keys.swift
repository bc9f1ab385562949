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

struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Signing keys.", subcommands: [List.self, Rotate.self, Revoke.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List signing keys.")
        @OptionGroup var common: Common

        func run() throws {
            let store = try common.openAnyStore()
            let keys = try store.signingKeys().map { k -> JSON in
                [
                    "kid": .string(k.kid), "alg": .string(k.algorithm), "status": k.retiredAt == nil ? "active" : "retired",
                    "encrypted": .bool(k.encrypted), "created_at": .string(Timestamp.rfc3339(millis: k.createdAt)),
                    "retired_at": k.retiredAt.map { .string(Timestamp.rfc3339(millis: $0)) } ?? .null,
                ]
            }
            printJSON(["keys": .array(keys)])
        }
    }

    struct Rotate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a new signing key; older keys stay published until their tokens expire.")
        @OptionGroup var common: Common
        @Option(help: "ES256, RS256 or EdDSA; without it, the algorithm that signs access tokens now (ES256 unless changed)")
        var alg: String?

        func run() throws {
            if let alg, SignatureAlgorithm(rawValue: alg) == nil { throw ValidationError("--alg must be ES256, RS256 or EdDSA") }
            let store = try common.openAnyStore()
            guard let issuer = try store.meta("issuer") else { throw CLIError(ProvisioningError.notInitialized.description) }
            let algorithm = try alg.flatMap(SignatureAlgorithm.init(rawValue:)) ?? KeyManagement.accessAlgorithm(store: store)
            let env = try common.environment(issuer: issuer)
            let kid = try KeyManagement.rotate(store: store, env: env, algorithm: algorithm, auditedFor: "cli")
            printJSON(["kid": .string(kid), "alg": .string(algorithm.rawValue)])
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "End a signing key at once (one that leaked): it leaves the JWKS and nothing it signed verifies any more.",
            discussion: "A current key is replaced by a new key of its algorithm first. Every access token, ID token and logout token it signed stops verifying on every node within a second: clients get new access tokens, users' apps refresh.")
        @OptionGroup var common: Common
        @Argument(help: "the key's kid (`latchkey keys list`)")
        var kid: String

        func run() throws {
            let store = try common.openAnyStore()
            guard let issuer = try store.meta("issuer") else { throw CLIError(ProvisioningError.notInitialized.description) }
            let env = try common.environment(issuer: issuer)
            let revoked = try KeyManagement.revoke(store: store, env: env, kid: kid, auditedFor: "cli")
            printJSON(["revoked": .string(kid), "alg": .string(revoked.algorithm.rawValue), "kid": revoked.replacement.map(JSON.string) ?? .null])
        }
    }
}
