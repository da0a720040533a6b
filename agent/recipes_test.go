package agent

import (
	"slices"
	"testing"
)

// TestRecipesStopInReverse: the recipes start in their list's order and
// stop last first, each once.
func TestRecipesStopInReverse(t *testing.T) {
	var names []string
	for _, r := range recipes {
		names = append(names, r.name)
	}
	if want := []string{"lock", "election", "queue", "config", "barrier"}; !slices.Equal(names, want) {
		t.Fatalf("recipes start as %v, want %v", names, want)
	}
	var stopped []string
	a := &Agent{}
	for _, n := range names {
		a.recipeStops = append(a.recipeStops, func() { stopped = append(stopped, n) })
	}
	a.stopRecipes()
	a.stopRecipes() // a second stop (a failed start, then stop) stops nothing again
	if want := []string{"barrier", "config", "queue", "election", "lock"}; !slices.Equal(stopped, want) {
		t.Fatalf("stopped %v, want %v", stopped, want)
	}
}
