module github.com/heraldpush/herald/tools

go 1.26.0
