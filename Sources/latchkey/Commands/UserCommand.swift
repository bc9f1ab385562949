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
    static let configuration = CommandConfiguration(commandName: "user", abstract: "Manage local users.", subcommands: [Add.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a local user; the password is read from standard input.")
        @OptionGroup var common: Common
        @Argument var username: String
        @Option var email: String?
        @Option var name: String?
        @Flag(name: .customLong("password-stdin"), help: "Read the password from standard input (required).") var passwordStdin = false

        func run() throws {
            guard passwordStdin else { throw ValidationError("--password-stdin is required (passwords are never taken as arguments)") }
            var password = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            if password.hasSuffix("\n") { password.removeLast() }
            if password.hasSuffix("\r") { password.removeLast() }
            let store = try common.openAnyStore()
            let issuer = try store.meta("issuer") ?? "http://localhost"
            let id = try Provisioning(env: try common.environment(issuer: issuer), store: store)
                .addUser(username: username, email: email, name: name, password: password)
            printJSON(["user_id": .string(id)])
        }
    }
}
