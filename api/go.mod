module github.com/heraldpush/herald/api

go 1.26.0
