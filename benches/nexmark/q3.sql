-- Nexmark q3, local item suggestion: the people in Oregon, Idaho or
-- California who sell in category 10, with their auctions. A running join
-- (Flink's regular join, EMIT CHANGES): each match is emitted once, in the
-- batch in which its second row arrives. The conditions on one stream are
-- applied before the join, so it keeps only the auctions of category 10
-- and the people of those three states (without a state.ttl, all of them).
SELECT P.name, P.city, P.state, A.id
FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')
EMIT CHANGES;
