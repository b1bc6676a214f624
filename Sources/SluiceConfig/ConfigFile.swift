import Foundation

/// Reads the files a configuration names: the configuration itself, and the PEM files of `server.tls` and
/// `upstream.tls` (SPEC §2).
///
/// One place for the reasons an operator sees (`no such file`, `is a directory`, `permission denied`), so
/// `sluice check`, `serve` and a reload word a missing file alike.
public enum ConfigFile {
    /// The file's bytes, or why they cannot be read.
    public static func read(_ path: String) -> Result<Data, ReadFailure> {
        if let problem = Self.problem(reading: path) { return .failure(problem) }
        guard let data = FileManager.default.contents(atPath: path) else {
            return .failure(ReadFailure("cannot be read"))
        }
        return .success(data)
    }

    /// Why the file cannot be read, or `nil` if it can (checked without reading it).
    public static func problem(reading path: String) -> ReadFailure? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            return ReadFailure("no such file")
        }
        if isDirectory.boolValue { return ReadFailure("is a directory") }
        guard FileManager.default.isReadableFile(atPath: path) else { return ReadFailure("permission denied") }
        return nil
    }

    /// Why a file cannot be read, in the words of ``read(_:)``.
    public struct ReadFailure: Error, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }
}
