// Package version reports the build's version, set at link time with
// -ldflags "-X github.com/beaconhq/beacon/version.Version=v1.2.3" and
// otherwise taken from the module's build information.
package version

import "runtime/debug"

// Version is the release this binary was built from.
var Version = ""

// String returns Version, or the module version recorded by the Go
// toolchain, or "dev".
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
