import Foundation

/// Runs a helper program (initdb, pg_ctl) to completion and captures what it printed.
struct ProgramResult {
    var exitCode: Int32
    var output: String
}

enum Program {
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> ProgramResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read before waiting: a full pipe would otherwise block the child forever.
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return ProgramResult(exitCode: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }
}
