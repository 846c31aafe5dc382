import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs a helper program (initdb, pg_ctl) to completion and captures what it printed.
struct ProgramResult {
    var exitCode: Int32
    var output: String
}

private let spawnLock = NSLock()

enum Program {
    /// posix_spawn + waitpid directly: Foundation's `Process.waitUntilExit` was seen to hang here
    /// when the child itself leaves a daemon behind (pg_ctl start).
    static func run(_ executable: String, _ arguments: [String]) throws -> ProgramResult {
        var pipeFDs: [Int32] = [-1, -1]
        // Close-on-exec: a program spawned concurrently by another thread (another pg_ctl whose
        // postmaster lives on) must not inherit the write end, or EOF never comes. posix_spawn's
        // dup2 onto 1 and 2 clears the flag for our own child only. The lock closes the window
        // between pipe() and fcntl() for spawns made here.
        spawnLock.lock()
        guard pipe(&pipeFDs) == 0 else {
            spawnLock.unlock()
            throw EmbeddedPostgresError.commandFailed(command: executable, output: "pipe: \(String(cString: strerror(errno)))")
        }
        _ = fcntl(pipeFDs[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(pipeFDs[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 2)

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        spawnLock.unlock()
        close(pipeFDs[1])
        guard spawned == 0 else {
            close(pipeFDs[0])
            throw EmbeddedPostgresError.commandFailed(command: executable, output: String(cString: strerror(spawned)))
        }
        // Read until EOF (every writer closed), then reap. A daemon that keeps the pipe open would
        // block here, so callers send daemons' output to a log file (pg_ctl -l).
        var output = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(pipeFDs[0], $0.baseAddress, $0.count) }
            if count > 0 {
                output.append(contentsOf: chunk[0..<count])
            } else if count == 0 || errno != EINTR {
                break
            }
        }
        close(pipeFDs[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        // WIFEXITED / WEXITSTATUS, spelled out (they are macros in C).
        let exitCode: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return ProgramResult(exitCode: exitCode, output: String(decoding: output, as: UTF8.self))
    }
}
