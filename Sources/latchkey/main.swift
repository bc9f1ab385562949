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

/// Errors the CLI prints to stderr with exit code 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

struct Latchkey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "latchkey",
        abstract: "Latchkey: an OAuth 2.0 / OpenID Connect authorization server with an OAuth client registry.",
        subcommands: [Init.self, Migrate.self, Org.self, UserCommand.self, Keys.self, Backup.self, Restore.self, Serve.self, ReencodeImage.self])
}

/// Exit codes: 0 success, 1 failure, 2 usage error.
func runCLI() -> Int32 {
    // Every file Latchkey writes is its owner's alone, whatever the caller's umask: databases, their WAL, backups
    // (password and secret hashes, sealed keys) and restore's working copy (review, session 20: a backup came out
    // 0644). The FastCGI socket, which nginx must reach, gets its mode set explicitly.
    umask(0o077)
    do {
        var command = try Latchkey.parseAsRoot()
        try command.run()
        return 0
    } catch let error as CLIError {
        FileHandle.standardError.write(Data("latchkey: \(error.description)\n".utf8))
        return 1
    } catch let error as ProvisioningError {
        FileHandle.standardError.write(Data("latchkey: \(error.description)\n".utf8))
        return 1
    } catch let error as StoreError {
        FileHandle.standardError.write(Data("latchkey: storage error: \(error)\n".utf8))
        return 1
    } catch {
        let code = Latchkey.exitCode(for: error)
        if code == .success {
            print(Latchkey.fullMessage(for: error))
            return 0
        }
        let message = Latchkey.fullMessage(for: error)
        let isUsage = error is ValidationError || code == .validationFailure || message.contains("Usage:") || message.hasPrefix("Error: Missing") || message.hasPrefix("Error: Unknown") || message.hasPrefix("Error: Unexpected")
        FileHandle.standardError.write(Data("latchkey: \(message)\n".utf8))
        return isUsage ? 2 : 1
    }
}

exit(runCLI())

