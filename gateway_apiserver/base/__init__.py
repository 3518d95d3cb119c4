"""Pure building blocks that every layer may import (they import nothing of ours)."""
