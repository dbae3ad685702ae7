"""The shared history: full-text search, filters, sort, pagination, most reused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from storage import Storage
from storage.errors import NotFound, ValidationFailed
from storage.models import Generation
from storage.types import Decision, GenerationStatus, HistoryQuery, HistorySort, ReviewStatus

from .conftest import People
from .helpers import generate


def _texts(storage: Storage, actor: int, **query: object) -> list[str]:
    page = storage.history.search(actor, HistoryQuery(**query))  # type: ignore[arg-type]
    return [item.prompt.text for item in page.items]


@pytest.fixture
def gallery(storage: Storage, people: People) -> dict[str, int]:
    """Four generations by three people, oldest first, each one image."""
    made = {}
    for owner, text in (
        (people.alice, "a red circle on a blue background"),
        (people.bob, "a blue square"),
        (people.alice, "red triangle, top left"),
        (people.rita, "a circular red thing"),
    ):
        made[text] = generate(storage, owner, text, images=1).id
    return made


def test_full_text_search_matches_every_word_or_its_start(
    storage: Storage, people: People, gallery: object
) -> None:
    assert sorted(_texts(storage, people.bob, text="red")) == [
        "a circular red thing",
        "a red circle on a blue background",
        "red triangle, top left",
    ]
    assert sorted(_texts(storage, people.bob, text="RED circ")) == [
        "a circular red thing",
        "a red circle on a blue background",
    ]
    assert _texts(storage, people.bob, text="blue square") == ["a blue square"]
    assert _texts(storage, people.bob, text="green") == []


@pytest.mark.parametrize(
    "query",
    [
        '"',
        "red AND",
        "NEAR(red blue)",
        "*",
        "red) OR (blue",
        "'; DROP TABLE prompts;--",
        "prompts_fts:red",
        "^red",
        "-blue",
    ],
)
def test_search_syntax_in_the_box_is_never_interpreted(
    storage: Storage, people: People, gallery: object, query: str
) -> None:
    storage.history.search(people.bob, HistoryQuery(text=query))  # no error, whatever the box holds
    assert len(_texts(storage, people.bob)) == 4


def test_private_prompts_stay_out_of_other_members_history(storage: Storage, people: People) -> None:
    generate(storage, people.alice, "a secret octagon", shared=False)
    assert _texts(storage, people.bob, text="octagon") == []
    assert _texts(storage, people.alice, text="octagon") == ["a secret octagon"]
    assert _texts(storage, people.rita, text="octagon") == ["a secret octagon"]


def test_filters_by_author_and_mine(storage: Storage, people: People, gallery: object) -> None:
    assert _texts(storage, people.bob, author="ALICE") == [
        "red triangle, top left",
        "a red circle on a blue background",
    ]
    assert _texts(storage, people.bob, mine=True) == ["a blue square"]
    assert _texts(storage, people.bob, author="alice", text="triangle") == ["red triangle, top left"]
    with pytest.raises(NotFound):
        storage.history.search(people.bob, HistoryQuery(author="ghost"))


def test_filters_by_review_status_and_generation_status(
    storage: Storage, people: People, gallery: dict[str, int]
) -> None:
    image_id = (
        storage.generations.get(people.alice, gallery["a red circle on a blue background"]).images[0].id
    )
    storage.reviews.submit(people.alice, image_id)
    assert _texts(storage, people.bob, review_status=ReviewStatus.PENDING) == [
        "a red circle on a blue background"
    ]
    storage.reviews.decide(people.rita, image_id, Decision.APPROVE)
    assert _texts(storage, people.bob, review_status=ReviewStatus.APPROVED) == [
        "a red circle on a blue background"
    ]
    assert len(_texts(storage, people.bob, review_status=ReviewStatus.DRAFT)) == 3
    prompt = storage.prompts.create(people.bob, text="still waiting")
    storage.generations.create(people.bob, prompt.id, model_id="m", model_hash="h", params={})
    assert _texts(storage, people.bob, status=GenerationStatus.QUEUED) == ["still waiting"]
    assert len(_texts(storage, people.bob, status=GenerationStatus.SUCCEEDED)) == 4


def test_filters_by_date_range(storage: Storage, people: People, gallery: dict[str, int]) -> None:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    with storage.db.write() as session:
        for n, generation_id in enumerate(gallery.values()):
            session.execute(
                update(Generation)
                .where(Generation.id == generation_id)
                .values(created_at=start + timedelta(days=n))
            )
    in_range = _texts(
        storage, people.bob, created_from=start + timedelta(days=1), created_to=start + timedelta(days=3)
    )
    assert in_range == ["red triangle, top left", "a blue square"]
    local = start.astimezone(ZoneInfo("Asia/Tokyo"))  # the same instant in another zone
    assert len(_texts(storage, people.bob, created_from=local)) == 4
    with pytest.raises(ValidationFailed) as error:
        storage.history.search(people.bob, HistoryQuery(created_from=datetime(2025, 3, 1)))
    assert error.value.field == "created_from"
    with pytest.raises(ValidationFailed):
        storage.history.search(
            people.bob, HistoryQuery(created_from=start, created_to=start - timedelta(days=1))
        )


def test_sort_orders(storage: Storage, people: People, gallery: dict[str, int]) -> None:
    newest = _texts(storage, people.bob)
    assert newest == list(reversed(list(gallery)))
    assert _texts(storage, people.bob, sort=HistorySort.OLDEST) == list(gallery)
    reused = storage.generations.get(people.bob, gallery["a blue square"]).prompt_id
    for _ in range(2):
        storage.generations.create(people.alice, reused, model_id="m", model_hash="h", params={})
    assert _texts(storage, people.bob, sort=HistorySort.MOST_USED)[:3] == ["a blue square"] * 3


def test_pagination_counts_every_match(storage: Storage, people: People) -> None:
    prompt = storage.prompts.create(people.alice, text="a purple hexagon")
    for seed in range(23):
        storage.generations.create(
            people.alice, prompt.id, model_id="m", model_hash="h", params={}, seed=seed
        )
    pages = [
        storage.history.search(people.bob, HistoryQuery(text="hexagon", page=n, page_size=10))
        for n in (1, 2, 3)
    ]
    assert [len(p.items) for p in pages] == [10, 10, 3]
    assert {p.total for p in pages} == {23} and pages[0].pages == 3
    seeds = [item.generation.seed for page in pages for item in page.items]
    assert seeds == list(range(22, -1, -1))
    for bad in ({"page": 0}, {"page_size": 0}, {"page_size": 101}):
        with pytest.raises(ValidationFailed):
            storage.history.search(people.bob, HistoryQuery(**bad))  # type: ignore[arg-type]


def test_favourites_filter_and_flag(storage: Storage, people: People, gallery: dict[str, int]) -> None:
    liked = storage.generations.get(people.bob, gallery["red triangle, top left"]).prompt_id
    storage.prompts.set_favourite(people.bob, liked)
    page = storage.history.search(people.bob, HistoryQuery(favourites_only=True))
    assert [(i.prompt.text, i.favourite) for i in page.items] == [("red triangle, top left", True)]
    assert not any(i.favourite for i in storage.history.search(people.alice).items)


def test_most_reused_prompts(storage: Storage, people: People) -> None:
    popular = storage.prompts.create(people.alice, text="popular")
    hidden = storage.prompts.create(people.alice, text="hidden", shared=False)
    storage.prompts.create(people.alice, text="never used")
    for _ in range(3):
        storage.generations.create(people.bob, popular.id, model_id="m", model_hash="h", params={})
    for _ in range(5):
        storage.generations.create(people.alice, hidden.id, model_id="m", model_hash="h", params={})
    storage.prompts.create(people.bob, text="popular, remixed", parent_id=popular.id)
    assert [(p.text, p.use_count) for p in storage.history.most_reused(people.bob)] == [("popular", 4)]
    assert [p.text for p in storage.history.most_reused(people.alice, limit=1)] == ["hidden"]
