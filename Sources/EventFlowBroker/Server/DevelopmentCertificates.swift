import Crypto
import Foundation
import SwiftASN1
import X509

/// A development CA and a server certificate for localhost, made once into a folder
/// (`ca.pem`, `server.pem`, `server-key.pem`) so the embedded mode has TLS without setup.
/// Clients trust `ca.pem`.
public enum DevelopmentCertificates {
    public struct Paths: Sendable, Hashable {
        public var certificateAuthority: String
        public var certificateChain: String
        public var privateKey: String
    }

    public static let validityDays = 825

    /// The files in `directory`, generated first if any is missing.
    public static func ensure(in directory: String) throws -> Paths {
        let paths = Paths(certificateAuthority: directory + "/ca.pem", certificateChain: directory + "/server.pem",
                          privateKey: directory + "/server-key.pem")
        let files = FileManager.default
        if [paths.certificateAuthority, paths.certificateChain, paths.privateKey].allSatisfy(files.fileExists(atPath:)) {
            return paths
        }
        try files.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])

        let now = Date()
        let notBefore = now.addingTimeInterval(-3600)
        let notAfter = now.addingTimeInterval(Double(validityDays) * 86_400)
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName {
            OrganizationName("EventFlow")
            CommonName("EventFlow development CA")
        }
        let ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey),
            notValidBefore: notBefore, notValidAfter: notAfter, issuer: caName, subject: caName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(caKey))

        let serverKey = P256.Signing.PrivateKey()
        let host = ProcessInfo.processInfo.hostName
        var names: [GeneralName] = [.dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])),
                                    .ipAddress(ASN1OctetString(contentBytes: ArraySlice([UInt8](repeating: 0, count: 15) + [1])))]
        if !host.isEmpty && host != "localhost" { names.append(.dnsName(host)) }
        let server = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(serverKey.publicKey),
            notValidBefore: notBefore, notValidAfter: notAfter, issuer: caName,
            subject: try DistinguishedName {
                OrganizationName("EventFlow")
                CommonName("localhost")
            },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(names)
            },
            issuerPrivateKey: .init(caKey))

        try write(ca.serializeAsPEM().pemString, to: paths.certificateAuthority, mode: 0o644)
        try write(server.serializeAsPEM().pemString + "\n" + ca.serializeAsPEM().pemString, to: paths.certificateChain, mode: 0o644)
        try write(serverKey.pemRepresentation, to: paths.privateKey, mode: 0o600)
        return paths
    }

    private static func write(_ text: String, to path: String, mode: Int) throws {
        try Data((text + "\n").utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
    }
}
