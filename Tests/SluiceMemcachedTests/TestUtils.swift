import Logging

/// Connection state lines are not wanted in test output.
let quietLogger: Logger = {
    var logger = Logger(label: "sluice.memcached.test")
    logger.logLevel = .critical
    return logger
}()
