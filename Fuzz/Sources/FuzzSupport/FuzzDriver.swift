import CLibFuzzer

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The signature of `LLVMFuzzerTestOneInput`: every fuzz target's entry point.
public typealias FuzzTarget = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

/// Runs libFuzzer with a target.
public enum FuzzDriver {
    /// Hands the command line to libFuzzer's driver with `target` as the function under test, and exits with its status.
    ///
    /// Called from each target's `main.swift`. SwiftPM links an executable so that `main` is the module's own entry
    /// point, which would shadow libFuzzer's `main`; `LLVMFuzzerRunDriver` is libFuzzer's `main` as a function.
    public static func run(_ target: FuzzTarget) -> Never {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        let status = LLVMFuzzerRunDriver(&argc, &argv, target)
        exit(status)
    }
}

/// Stops the run with `message` when `condition` is false: libFuzzer sees the trap, saves the input as a crash file
/// and prints it.
@inline(never)
public func fuzzCheck(
    _ condition: @autoclosure () -> Bool,
    _ message: @autoclosure () -> String,
    file: StaticString = #fileID,
    line: UInt = #line
) {
    guard !condition() else { return }
    fatalError("fuzz check failed: \(message())", file: file, line: line)
}
