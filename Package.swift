// swift-tools-version:6.0
import PackageDescription

// Layering (see README "Architecture"): six system-library targets, each
// imported by exactly one thin wrapper; everything above them is safe Swift.
let package = Package(
    name: "Latchkey",
    products: [
        .executable(name: "latchkey", targets: ["latchkey"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CFastCGI", path: "Sources/CFastCGI"),
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite"),
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL"),
        .systemLibrary(name: "CGD", path: "Sources/CGD"),
        .systemLibrary(name: "CLibPQ", path: "Sources/CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),

        .target(name: "FastCGI", dependencies: ["CFastCGI", "Common"]),
        .target(name: "SQLite", dependencies: ["CSQLite"]),
        .target(name: "Cryptography", dependencies: ["COpenSSL", "Common"]),
        .target(name: "Imaging", dependencies: ["CGD"]),
        .target(name: "Postgres", dependencies: ["CLibPQ"]),
        .target(name: "HTTPClient", dependencies: ["CCurl"]),

        .target(name: "Common"),
        .target(name: "HTTPCore", dependencies: ["Common", .product(name: "HTTPTypes", package: "swift-http-types")]),
        .target(name: "JOSE", dependencies: ["Common", "Cryptography"]),
        .target(name: "OAuth", dependencies: ["Common", "Cryptography", "JOSE"]),
        .target(name: "SharedSQL", dependencies: ["Common", "OAuth"]),
        .target(name: "SQLiteStore", dependencies: ["Common", "SQLite", "OAuth", "SharedSQL"]),
        .target(name: "PostgresStore", dependencies: ["Common", "Postgres", "OAuth", "SharedSQL"]),
        .target(name: "Server", dependencies: ["Common", "HTTPCore", "JOSE", "OAuth", "Cryptography", "Imaging"]),
        .executableTarget(name: "latchkey", dependencies: [
            "Common", "FastCGI", "HTTPClient", "HTTPCore", "Imaging", "OAuth", "SQLiteStore", "Postgres", "PostgresStore", "Server", "Cryptography",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Three test targets, by layer (issue 12): the C wrappers, the domain
        // (OAuth rules, grants, registry, stores; no HTTP) and the server
        // (handlers called with plain requests). TestSupport is what they
        // share: a clock, the store the run is on, a provisioned database.
        .target(name: "TestSupport", dependencies: ["Common", "Cryptography", "OAuth", "Postgres", "PostgresStore", "SQLiteStore"], path: "Tests/Support"),
        .testTarget(name: "WrapperTests", dependencies: ["Common", "Cryptography", "FastCGI", "HTTPClient", "Imaging", "Postgres", "SQLite", "TestSupport"]),
        .testTarget(name: "DomainTests", dependencies: [
            "Common", "Cryptography", "JOSE", "OAuth", "SQLite", "SQLiteStore", "Postgres", "PostgresStore", "SharedSQL", "TestSupport",
        ]),
        .testTarget(name: "ServerTests", dependencies: [
            "Common", "HTTPCore", "JOSE", "OAuth", "Cryptography", "Imaging", "Server", "SQLiteStore", "TestSupport",
        ]),
    ],
    swiftLanguageModes: [.v6]
)
