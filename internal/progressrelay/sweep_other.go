//go:build !unix

package progressrelay

// processExists cannot tell here: every directory is kept.
func processExists(int) bool { return true }
