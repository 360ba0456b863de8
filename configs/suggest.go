package configs

import (
	"fmt"
	"strings"
)

// DidYouMean returns ` (did you mean "x"?)` when one of known is a likely typo
// of word, and "" otherwise. Wiring code uses it for unknown action types; the
// loader uses it for unknown keys and values.
func DidYouMean(word string, known []string) string {
	if s := suggest(word, known); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	return ""
}

// suggest returns the element of known closest to word by edit distance (case
// folded), if it is close enough to be a typo: at most half of word's length,
// and at least one edit allowed. Ties go to the first element of known.
func suggest(word string, known []string) string {
	w := strings.ToLower(word)
	limit := max(1, len([]rune(w))/2)
	best, bestDist := "", limit+1
	for _, k := range known {
		d := editDistance(w, strings.ToLower(k))
		if d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		// Keys are short; do not spend quadratic time on a pasted paragraph.
		if a == b {
			return 0
		}
		return max(len(ra), len(rb))
	}
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
