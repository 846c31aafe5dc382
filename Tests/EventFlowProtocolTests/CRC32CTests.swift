import NIOCore
import Testing
@testable import EventFlowProtocol

@Suite struct CRC32CTests {
    @Test func standardCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum(ByteBuffer(string: "123456789")) == 0xE306_9283)
    }

    @Test func emptyInputIsZero() {
        #expect(CRC32C.checksum([UInt8]()) == 0)
        #expect(CRC32C.checksum(ByteBuffer()) == 0)
    }

    @Test func knownVectorsFromRFC3720() {
        // iSCSI (RFC 3720, B.4) uses CRC32C; these are its published test patterns.
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }) == 0x113F_DB5C)
    }

    @Test func hardwareAndPortablePathsAgreeOnManyLengthsAndAlignments() {
        let data = RecordsTestSupport.pseudoRandomBytes(count: 4096 + 64, seed: 42)
        data.withUnsafeBytes { all in
            for alignment in 0..<16 {
                for length in [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 255, 1000, 4095, 4096] {
                    let slice = UnsafeRawBufferPointer(rebasing: all[alignment..<(alignment + length)])
                    #expect(CRC32C.update(0, slice) == CRC32C.updatePortable(0, slice),
                            "length \(length) alignment \(alignment)")
                }
            }
        }
    }

    @Test func incrementalUpdateEqualsOneShot() {
        let data = RecordsTestSupport.pseudoRandomBytes(count: 10_000, seed: 7)
        data.withUnsafeBytes { all in
            let whole = CRC32C.update(0, all)
            for split in [1, 3, 8, 4097, 9_999] {
                let first = CRC32C.update(0, UnsafeRawBufferPointer(rebasing: all[0..<split]))
                #expect(CRC32C.update(first, UnsafeRawBufferPointer(rebasing: all[split...])) == whole)
                let portable = CRC32C.updatePortable(CRC32C.updatePortable(0, UnsafeRawBufferPointer(rebasing: all[0..<split])),
                                                     UnsafeRawBufferPointer(rebasing: all[split...]))
                #expect(portable == whole)
            }
        }
    }

    @Test func rangeOfABufferIsCheckedAgainstItsBounds() {
        var buffer = ByteBuffer(string: "xx123456789yy")
        buffer.moveReaderIndex(forwardBy: 1)
        #expect(CRC32C.checksum(buffer, at: 2, length: 9) == 0xE306_9283)
        #expect(CRC32C.checksum(buffer, at: 0, length: 2) == nil)  // before the reader index
        #expect(CRC32C.checksum(buffer, at: 5, length: 9) == nil)  // past the end
        #expect(CRC32C.checksum(buffer, at: 2, length: -1) == nil)
    }
}
