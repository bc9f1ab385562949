import Common
@testable import Cryptography
import TestSupport
import Testing

@Suite struct CryptographyTests {
    @Test func sha256MatchesFIPS180Vectors() {
        #expect(Hex.encode(Digest.sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Hex.encode(Digest.sha256("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Hex.encode(Digest.sha512(Array("abc".utf8))) == "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
            + "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")
    }

    @Test func hmacMatchesRFC4231() {
        // Test case 1.
        let key1 = [UInt8](repeating: 0x0b, count: 20)
        #expect(Hex.encode(Digest.hmacSHA256(key: key1, data: Array("Hi There".utf8)))
                == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        // Test case 2.
        #expect(Hex.encode(Digest.hmacSHA256(key: Array("Jefe".utf8), data: Array("what do ya want for nothing?".utf8)))
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        // Test case 6: a key longer than the block size.
        let key6 = [UInt8](repeating: 0xaa, count: 131)
        #expect(Hex.encode(Digest.hmacSHA256(key: key6, data: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)))
                == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    @Test func preparedHMACKeysAgreeWithRFC4231AndTheOneShot() {
        // RFC 4231 test case 2 ("Jefe"), and a key longer than a block (test case 6).
        let jefe = HMACKey(key: Array("Jefe".utf8))
        #expect(Hex.encode(jefe.mac(Array("what do ya want for nothing?".utf8))) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        let long = HMACKey(key: [UInt8](repeating: 0xaa, count: 131))
        #expect(Hex.encode(long.mac(Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)))
                == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        for n in [0, 1, 55, 64, 200] {
            let data = SecureRandom.bytes(n)
            #expect(jefe.mac(data) == Digest.hmacSHA256(key: Array("Jefe".utf8), data: data))
            #expect(jefe.mac(data) == jefe.mac(data))
        }
    }

    @Test func constantTimeEqualCompares() {
        #expect(Digest.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!Digest.constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!Digest.constantTimeEqual([1, 2, 3], [1, 2]))
        #expect(Digest.constantTimeEqual([], []))
    }

    @Test func randomBytesDiffer() {
        #expect(SecureRandom.bytes(32).count == 32)
        #expect(SecureRandom.bytes(32) != SecureRandom.bytes(32))
    }

    @Test func scryptHashesVerifyAndRefuseWrongPasswords() {
        let encoded = PasswordHasher.hash("correct horse battery", logN: 10, p: 1)
        #expect(encoded.hasPrefix("$scrypt$ln=10,r=8,p=1$"))
        #expect(PasswordHasher.hash("x").hasPrefix("$scrypt$ln=14,r=8,p=5$"))
        #expect(PasswordHasher.verify("correct horse battery", encoded: encoded))
        #expect(!PasswordHasher.verify("correct horse batterz", encoded: encoded))
        #expect(!PasswordHasher.verify("", encoded: encoded))
        #expect(!PasswordHasher.verify("x", encoded: "$scrypt$ln=99,r=8,p=1$AAAA$AAAA"))
        #expect(!PasswordHasher.verify("x", encoded: "garbage"))
        #expect(PasswordHasher.hash("same", logN: 10, p: 1) != PasswordHasher.hash("same", logN: 10, p: 1))
    }

    /// AES-256-GCM known answers: McGrew and Viega's test cases 13 and 14
    /// (the GCM specification submitted to NIST): zero key and nonce, an
    /// empty and a one-block zero plaintext.
    @Test func sealedBoxMatchesTheGCMSpecificationVectors() throws {
        let key = [UInt8](repeating: 0, count: 32), nonce = [UInt8](repeating: 0, count: 12)
        let empty = try SealedBox.seal([], key: key, nonce: nonce)
        #expect(Hex.encode(empty) == Hex.encode(nonce) + "530f8afbc74536b9a963b4f1c4cb738b")
        let block = try SealedBox.seal([UInt8](repeating: 0, count: 16), key: key, nonce: nonce)
        #expect(Hex.encode(block) == Hex.encode(nonce) + "cea7403d4d606b6e074ec5d3baf39d18" + "d0d1c8a799996bf0265b98b5d48ab919")
        #expect(try SealedBox.open(empty, key: key) == [])
        #expect(try SealedBox.open(block, key: key) == [UInt8](repeating: 0, count: 16))
        // Shorter than nonce and tag, or a truncated tag: refused, never a crash.
        #expect(throws: CryptoError.self) { try SealedBox.open(Array(block.prefix(27)), key: key) }
        #expect(throws: CryptoError.self) { try SealedBox.open(Array(block.dropLast()), key: key) }
    }

    @Test func sealedBoxRoundTripsAndDetectsTampering() throws {
        let key = SecureRandom.bytes(32)
        let sealed = try SealedBox.seal(Array("private key".utf8), key: key)
        #expect(try SealedBox.open(sealed, key: key) == Array("private key".utf8))
        var tampered = sealed
        tampered[tampered.count - 1] ^= 1
        #expect(throws: CryptoError.self) { try SealedBox.open(tampered, key: key) }
        #expect(throws: CryptoError.self) { try SealedBox.open(sealed, key: SecureRandom.bytes(32)) }
    }

    @Test(arguments: SignatureAlgorithm.allCases)
    func signaturesRoundTripThroughDERExport(_ alg: SignatureAlgorithm) throws {
        let key = try SigningKey.generate(alg)
        let message = Array("signing input".utf8)
        let signature = try key.sign(message)
        if alg == .es256 { #expect(signature.count == 64) }
        if alg == .edDSA { #expect(signature.count == 64) }
        let publicKey = try SigningKey(publicKeyDER: try key.publicKeyDER(), algorithm: alg)
        #expect(publicKey.verify(signature: signature, message: message))
        #expect(!publicKey.verify(signature: signature, message: Array("other input".utf8)))
        let reloaded = try SigningKey(privateKeyDER: try key.privateKeyDER(), algorithm: alg)
        #expect(publicKey.verify(signature: try reloaded.sign(message), message: message))
        var bad = signature
        bad[0] ^= 0x55
        #expect(!publicKey.verify(signature: bad, message: message))
        #expect(!publicKey.verify(signature: [], message: message))
    }

    /// A prepared key signs and verifies exactly as the plain key does, many
    /// times over on one context, and refuses what the plain key refuses.
    @Test(arguments: SignatureAlgorithm.allCases)
    func preparedKeysAgreeWithPlainKeys(_ alg: SignatureAlgorithm) throws {
        let key = try SigningKey.generate(alg)
        let publicKey = try SigningKey(publicKeyDER: try key.publicKeyDER(), algorithm: alg)
        let signer = PreparedKey(key)
        let verifier = PreparedKey(publicKey)
        for i in 0..<5 {
            let message = Array("message \(i)".utf8)
            let prepared = try signer.sign(message)
            #expect(prepared.count == (alg == .rs256 ? 256 : 64))
            #expect(publicKey.verify(signature: prepared, message: message))
            #expect(verifier.verify(signature: prepared, message: message))
            #expect(verifier.verify(signature: try key.sign(message), message: message))
            #expect(!verifier.verify(signature: prepared, message: Array("other".utf8)))
            var bad = prepared
            bad[bad.count - 1] ^= 0x01
            #expect(!verifier.verify(signature: bad, message: message))
            #expect(!verifier.verify(signature: [], message: message))
        }
        // RS256 is deterministic (PKCS#1 v1.5): the prepared signature is byte for byte the plain one.
        if alg == .rs256 {
            let message = Array("same".utf8)
            #expect(try signer.sign(message) == (try key.sign(message)))
        }
        #expect(throws: CryptoError.self) { try verifier.sign([1]) }
    }

    /// Without presigning, ES256 signs through `ECDSA_do_sign_ex` directly
    /// (not the provider's `EVP_PKEY_sign`): the same message signed 200
    /// times verifies every time, always low S, and never repeats an r
    /// (OpenSSL's nonce, fresh each time); an RS256 key has no such path.
    @Test func es256SignsDirectlyWithFreshNonces() throws {
        let key = try SigningKey.generate(.es256)
        let publicKey = try SigningKey(publicKeyDER: try key.publicKeyDER(), algorithm: .es256)
        let signer = PreparedKey(key)
        #expect(signer.signsDirectly)
        #expect(!PreparedKey(try SigningKey.generate(.rs256)).signsDirectly)
        #expect(!PreparedKey(publicKey).signsDirectly)
        let message = Array("the same message".utf8)
        var rs = Set<[UInt8]>()
        for _ in 0..<200 {
            let signature = try signer.sign(message)
            #expect(signature.count == 64)
            #expect(!P256Order.isHigh(signature[32...]))
            #expect(publicKey.verify(signature: signature, message: message))
            rs.insert(Array(signature[..<32]))
        }
        #expect(rs.count == 200)
        #expect(signer.preparedNonces == (pending: 0, ready: 0))
    }

    /// What a presigner holds after `made` signatures made quickly: none
    /// prepared for the first 63 (the thread's rate is known after 64), then
    /// one per signature, a batch finished at 64 and used while the next fills.
    static func expectedPool(after made: Int) -> (pending: Int, ready: Int) {
        if made < 64 { return (0, 0) }
        if made < 127 { return (made - 63, 0) }
        let j = (made - 127) % 64
        return (j, 64 - j)
    }

    /// ECDSA needs a fresh secret nonce per signature: the same message
    /// signed many times on prepared keys verifies every time (low S:
    /// `verify` refuses high S) and never repeats an r, which a repeated
    /// nonce would (and would give the private key away). 150 signatures a
    /// key go through OpenSSL's own nonces (the first 127) and then prepared
    /// pairs, whose r and k^-1 come from the shared inversions: a wrong one
    /// would not verify, and OpenSSL never had to redo one.
    @Test func es256NeverRepeatsANonce() throws {
        let key = try SigningKey.generate(.es256)
        let publicKey = try SigningKey(publicKeyDER: try key.publicKeyDER(), algorithm: .es256)
        let signers = [PreparedKey(key, presign: true), PreparedKey(key, presign: true)]
        var rs = Set<[UInt8]>()
        let message = Array("the same message".utf8)
        let before = PreparedKey.presignedSignatures
        for i in 0..<300 {
            let signature = try signers[i % 2].sign(message)
            #expect(publicKey.verify(signature: signature, message: message))
            #expect(!P256Order.isHigh(signature[32..<64]))
            rs.insert(Array(signature[0..<32]))
            let made = i / 2 + 1
            #expect(signers[i % 2].preparedNonces == Self.expectedPool(after: made), "after \(made) signatures")
        }
        #expect(rs.count == 300)
        #expect(signers.map(\.presignFallbacks) == [0, 0])
        #expect(PreparedKey.presignedSignatures - before >= 2 * (150 - 127))
    }

    /// A prepared batch's pairs are each used once and wiped: the signature
    /// takes the r of the pair that was next, and that r is then gone.
    @Test func es256PreparedNoncesAreUsedOnce() throws {
        let key = try SigningKey.generate(.es256)
        let publicKey = try SigningKey(publicKeyDER: try key.publicKeyDER(), algorithm: .es256)
        let signer = PreparedKey(key, presign: true)
        for i in 0..<127 { _ = try signer.sign(Array("warm \(i)".utf8)) }
        #expect(signer.preparedNonces == (pending: 0, ready: 64))
        var rs = Set<[UInt8]>()
        for i in 0..<64 {
            let message = Array("prepared \(i)".utf8)
            let next = try #require(signer.nextPreparedR)
            let signature = try signer.sign(message)
            #expect(publicKey.verify(signature: signature, message: message))
            #expect(Array(signature[0..<32]) == next)
            #expect(signer.nextPreparedR != next)
            rs.insert(Array(signature[0..<32]))
        }
        #expect(rs.count == 64)
        // The 64 signatures used the 64 prepared pairs and prepared the next batch in their place.
        #expect(signer.preparedNonces == (pending: 0, ready: 64))
        #expect(signer.presignFallbacks == 0)
    }

    /// A ready batch begun more than two seconds ago by the wall clock is
    /// wiped, not used (the batch being filled, if fresh, is kept); a batch
    /// filled too slowly starts again; with presigning off (the default)
    /// OpenSSL signs every token and nothing is prepared.
    @Test func es256StalePreparedNoncesAreNotUsed() throws {
        let key = try SigningKey.generate(.es256)
        let publicKey = try SigningKey(publicKeyDER: try key.publicKeyDER(), algorithm: .es256)
        let signer = PreparedKey(key, presign: true)
        for i in 0..<133 { _ = try signer.sign(Array("before \(i)".utf8)) }
        #expect(signer.preparedNonces == (pending: 6, ready: 58))
        signer.pretendPrepared(secondsAgo: 3, pendingToo: false)
        let stale = try #require(signer.nextPreparedR)
        let message = Array("after the restore".utf8)
        let signature = try signer.sign(message)
        #expect(publicKey.verify(signature: signature, message: message))
        #expect(Array(signature[0..<32]) != stale)
        #expect(signer.preparedNonces == (pending: 7, ready: 0))
        // The batch being filled, too old, starts again.
        signer.pretendPrepared(secondsAgo: 3, pendingToo: true)
        _ = try signer.sign(message)
        #expect(signer.preparedNonces == (pending: 1, ready: 0))
        // And a clock set back as far counts the same.
        signer.pretendPrepared(secondsAgo: -3, pendingToo: true)
        _ = try signer.sign(message)
        #expect(signer.preparedNonces == (pending: 1, ready: 0))

        let plain = PreparedKey(key)
        for i in 0..<200 {
            let message = Array("plain \(i)".utf8)
            #expect(publicKey.verify(signature: try plain.sign(message), message: message))
        }
        #expect(plain.preparedNonces == (pending: 0, ready: 0))
    }

    /// A forked child holds its parent's prepared pairs: it wipes them all
    /// before its first signature (OpenSSL signs it) instead of using one
    /// its parent may use too.
    @Test func es256ForkedProcessDropsItsPreparedNonces() throws {
        let key = try SigningKey.generate(.es256)
        let publicKey = try SigningKey(publicKeyDER: try key.publicKeyDER(), algorithm: .es256)
        let signer = PreparedKey(key, presign: true)
        for i in 0..<133 { _ = try signer.sign(Array("before \(i)".utf8)) }
        #expect(signer.preparedNonces == (pending: 6, ready: 58))
        let parents = try #require(signer.nextPreparedR)
        signer.pretendForked()
        let message = Array("after the fork".utf8)
        let signature = try signer.sign(message)
        #expect(publicKey.verify(signature: signature, message: message))
        #expect(Array(signature[0..<32]) != parents)
        #expect(signer.preparedNonces == (pending: 1, ready: 0))
    }

    @Test func keysRefuseAnotherAlgorithm() throws {
        let ec = try SigningKey.generate(.es256)
        #expect(throws: CryptoError.self) { try SigningKey(publicKeyDER: try ec.publicKeyDER(), algorithm: .rs256) }
        #expect(throws: CryptoError.self) { try SigningKey(publicKeyDER: try ec.publicKeyDER(), algorithm: .edDSA) }
        #expect(throws: CryptoError.self) { try SigningKey(publicKeyDER: [1, 2, 3], algorithm: .es256) }
    }
}
