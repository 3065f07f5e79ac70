package cli

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// readBuildInfo is the binary's build information (nil when it has none).
func readBuildInfo() *debug.BuildInfo {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return info
}

// versionString is what --version prints: "mockstagram VERSION", then
// the VCS revision and time, whether the tree was modified, and the Go
// version, as far as the build recorded them. override (set at link
// time) replaces the module version.
func versionString(override string, info *debug.BuildInfo) string {
	version := override
	if version == "" && info != nil {
		version = info.Main.Version
	}
	if version == "" {
		version = "(devel)"
	}
	if info == nil {
		return "mockstagram " + version
	}
	var revision, at string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	var details []string
	if revision != "" {
		if len(revision) > 12 {
			revision = revision[:12]
		}
		if modified {
			revision += "-dirty"
		}
		details = append(details, "commit "+revision)
	}
	if at != "" {
		details = append(details, at)
	}
	if info.GoVersion != "" {
		details = append(details, info.GoVersion)
	}
	if len(details) == 0 {
		return "mockstagram " + version
	}
	return fmt.Sprintf("mockstagram %s (%s)", version, strings.Join(details, ", "))
}
