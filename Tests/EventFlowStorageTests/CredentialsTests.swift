import EventFlowStorage
import EventFlowTestSupport
import Foundation
import Testing

@Suite struct CredentialsTests {
    @Test func passwordHashIsSaltedScryptAndVerifies() throws {
        let first = try PasswordHasher.hash("correct horse battery", rounds: 1024)
        let second = try PasswordHasher.hash("correct horse battery", rounds: 1024)
        #expect(first.hasPrefix("scrypt$1024$8$1$"))
        #expect(first != second)  // salted
        #expect(PasswordHasher.verify("correct horse battery", against: first))
        #expect(!PasswordHasher.verify("correct horse batterz", against: first))
        #expect(!PasswordHasher.verify("correct horse battery", against: "garbage"))
    }

    @Test func userPasswordIsStoredHashedAndChecked() throws {
        let db = try PostgresConnection(url: try TestCluster.freshDatabase())
        defer { db.close() }
        let org = try Organizations.create(db, name: "acme")
        let user = try Users.create(db, org: org, email: "ada@example.com", password: "s3cret-pass", role: "admin", passwordRounds: 1024)
        let stored = try db.query("SELECT password_hash FROM users WHERE id = $1", [user.id.uuidString])[0]["password_hash"]
        #expect(stored?.contains("s3cret-pass") == false)
        #expect(stored?.hasPrefix("scrypt$") == true)
        #expect(try Users.authenticate(db, email: "ADA@example.com", password: "s3cret-pass")?.id == user.id)
        #expect(try Users.authenticate(db, email: "ada@example.com", password: "wrong-pass") == nil)
        #expect(throws: TenancyError.passwordTooShort(minimumCharacters: 8)) {
            try Users.create(db, org: org, email: "b@example.com", password: "short", role: "viewer")
        }
    }

    @Test func apiKeyCreateVerifyRevokeReject() throws {
        let db = try PostgresConnection(url: try TestCluster.freshDatabase())
        defer { db.close() }
        let org = try Organizations.create(db, name: "acme")
        let created = try APIKeys.create(db, org: org, label: "ingest")
        let id = created.key.id.uuidString.lowercased()
        // Only the hash is stored.
        let stored = try db.query("SELECT key_hash FROM api_keys WHERE id = $1", [id])[0]["key_hash"]
        #expect(stored == APIKeySecret.hash(created.secret))
        #expect(stored?.contains(created.secret) == false)

        #expect(try APIKeys.authenticate(db, id: id, secret: created.secret).orgID == org.id)
        #expect(throws: TenancyError.wrongSecret) { try APIKeys.authenticate(db, id: id, secret: created.secret + "x") }
        #expect(throws: TenancyError.unknownAPIKey("nope")) { try APIKeys.authenticate(db, id: "nope", secret: created.secret) }

        let revoked = try APIKeys.revoke(db, id: id)
        #expect(revoked.revokedAt != nil)
        #expect(throws: TenancyError.apiKeyRevoked(id)) { try APIKeys.authenticate(db, id: id, secret: created.secret) }
        #expect(try APIKeys.list(db, org: org).map(\.revokedAt) == [revoked.revokedAt])
    }

    @Test func constantTimeComparisonComparesWholeValues() {
        #expect(constantTimeEqual(Data([1, 2, 3]), Data([1, 2, 3])))
        #expect(!constantTimeEqual(Data([1, 2, 3]), Data([1, 2, 4])))
        #expect(!constantTimeEqual(Data([1, 2, 3]), Data([1, 2])))
    }
}
