import Crypto
import _CryptoExtras
import Foundation

/// Password hashing for dashboard users: scrypt (RFC 7914) from swift-crypto, salted per user.
///
/// Stored as `scrypt$<N>$<r>$<p>$<salt base64>$<hash base64>` so parameters can be raised later
/// without invalidating existing hashes.
public enum PasswordHasher {
    /// N = 2^15, r = 8, p = 1: about 32 MiB and tens of milliseconds per hash, as OWASP recommends.
    public static let defaultRounds = 1 << 15
    public static let blockSize = 8
    public static let parallelism = 1
    static let saltBytes = 16
    static let hashBytes = 32

    public static func hash(_ password: String, rounds: Int = defaultRounds) throws -> String {
        var salt = [UInt8](repeating: 0, count: saltBytes)
        var generator = SystemRandomNumberGenerator()
        for i in salt.indices { salt[i] = UInt8.random(in: 0...255, using: &generator) }
        let key = try KDF.Scrypt.deriveKey(from: Array(password.utf8), salt: salt, outputByteCount: hashBytes,
                                           rounds: rounds, blockSize: blockSize, parallelism: parallelism)
        let hash = key.withUnsafeBytes { Data($0) }
        return "scrypt$\(rounds)$\(blockSize)$\(parallelism)$\(Data(salt).base64EncodedString())$\(hash.base64EncodedString())"
    }

    public static func verify(_ password: String, against stored: String) -> Bool {
        let parts = stored.split(separator: "$").map(String.init)
        guard parts.count == 6, parts[0] == "scrypt",
              let rounds = Int(parts[1]), let blockSize = Int(parts[2]), let parallelism = Int(parts[3]),
              let salt = Data(base64Encoded: parts[4]), let expected = Data(base64Encoded: parts[5]),
              rounds > 1, rounds <= 1 << 20, blockSize > 0, blockSize <= 32, parallelism > 0, parallelism <= 16 else {
            return false
        }
        guard let key = try? KDF.Scrypt.deriveKey(from: Array(password.utf8), salt: salt, outputByteCount: expected.count,
                                                  rounds: rounds, blockSize: blockSize, parallelism: parallelism) else {
            return false
        }
        return key.withUnsafeBytes { constantTimeEqual(Data($0), expected) }
    }
}

/// API key secrets: 32 random bytes, shown once as `efs_<base64url>`; only a SHA-256 is stored.
///
/// The secret has 256 bits of entropy, so a fast hash is enough (no dictionary to attack) and
/// keeps SASL authentication cheap on every connection.
public enum APIKeySecret {
    public static let prefix = "efs_"

    public static func generate() -> String {
        var bytes = [UInt8](repeating: 0, count: 32)
        var generator = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255, using: &generator) }
        let encoded = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return prefix + encoded
    }

    public static func hash(_ secret: String) -> String {
        "sha256$" + SHA256.hash(data: Data(secret.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    public static func verify(_ secret: String, against stored: String) -> Bool {
        constantTimeEqual(Data(hash(secret).utf8), Data(stored.utf8))
    }
}

/// Compares without an early exit, so timing does not reveal how many leading bytes matched.
public func constantTimeEqual(_ a: Data, _ b: Data) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for (x, y) in zip(a, b) { difference |= x ^ y }
    return difference == 0
}
