package e2e

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestReadmeLinksResolve: every relative link of README.md names a file
// of the repository (the design contract's link pointed outside a clone),
// and the contract's copy in docs/ is the shared document as it is, where
// the shared folder is beside the checkout.
func TestReadmeLinksResolve(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	links := regexp.MustCompile(`\]\(([^)#:]+)(#[^)]*)?\)`).FindAllSubmatch(readme, -1)
	if len(links) == 0 {
		t.Fatal("README.md has no relative links")
	}
	for _, m := range links {
		target := string(m[1])
		if _, err := os.Stat(filepath.Join("..", target)); err != nil {
			t.Errorf("README.md links %s, which is not in the repository: %v", target, err)
		}
	}
	copyOf, err := os.ReadFile(filepath.Join("..", "docs", "DESIGN.md"))
	if err != nil {
		t.Fatal(err)
	}
	shared, err := os.ReadFile(filepath.Join("..", "..", "shared", "DESIGN.md"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		t.Log("no ../shared/DESIGN.md beside this checkout to compare docs/DESIGN.md with")
	case err != nil:
		t.Fatal(err)
	case !bytes.Equal(copyOf, shared):
		t.Error("docs/DESIGN.md differs from ../shared/DESIGN.md: copy it again")
	}
}
