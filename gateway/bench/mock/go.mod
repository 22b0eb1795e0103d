module synco.coop/bench/mock

go 1.22
