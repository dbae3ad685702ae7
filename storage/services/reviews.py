"""Reviews: the author submits a draft image, a reviewer or admin (never the author) decides.

draft --submit--> pending --approve--> approved
                  pending --reject---> rejected
                  pending --request_changes--> draft (the author may submit again)

Reject and request-changes need a comment: the author must learn why. An author answering a change
request may submit a new image as a revision of the old one (`revision_of`); the chain of such links
is the image's lineage, shown to the reviewer.

Decisions are appended to `reviews` and never changed (database triggers refuse UPDATE and
DELETE); the image's `review_status` follows the latest one. Status moves are conditional UPDATEs,
so two reviewers deciding the same image at once cannot both succeed.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from ..errors import InvalidState, NotFound, PermissionDenied, ValidationFailed
from ..models import Generation, Image, Prompt, Review, User
from ..text import checked_text
from ..types import Actor, Decision, ImageInfo, InboxItem, Page, ReviewInfo, ReviewQueueItem, ReviewStatus
from .helpers import (
    STAFF,
    Service,
    acting_person,
    audit,
    can_see_generation,
    changed_rows,
    check_page,
    generation_info,
    get_or_404,
    image_info,
    is_row_id,
    prompt_info,
    review_info,
)
from .prompts import visible_prompt

MAX_COMMENT = 2000
MAX_LINEAGE = 100
"""Revisions followed back at most; a longer chain is cut there (it cannot loop: submit refuses cycles)."""
NEEDS_COMMENT = {
    Decision.REJECT: "Say why it is rejected.",
    Decision.REQUEST_CHANGES: "Say what should change.",
}
OUTCOME = {
    Decision.APPROVE: ReviewStatus.APPROVED,
    Decision.REJECT: ReviewStatus.REJECTED,
    Decision.REQUEST_CHANGES: ReviewStatus.DRAFT,
}


def _set_status(session: Session, image: Image, old: ReviewStatus, new: ReviewStatus) -> None:
    changed = changed_rows(
        session,
        update(Image)
        .where(Image.id == image.id, Image.review_status == old.value)
        .values(review_status=new.value),
    )
    session.refresh(image)
    if changed != 1:
        raise InvalidState(f"Image {image.id} is {image.review_status}, not {old.value}.")


class ReviewService(Service):
    def submit(self, actor: Actor, image_id: int, revision_of: int | None = None) -> ImageInfo:
        """The generation's owner asks for a review of a draft image, optionally as a revision of an
        earlier image of theirs (the reviewer then sees what it answers)."""
        with self.write() as session:
            user = acting_person(session, actor)
            image = self._image(session, user, image_id)
            if image.generation.user_id != user.id:
                raise PermissionDenied("Only the person who made an image can submit it for review.")
            if image.file_missing:
                raise InvalidState(f"The file of image {image_id} is missing; it cannot be reviewed.")
            if revision_of is not None:
                self._link_revision(session, user, image, revision_of)
            _set_status(session, image, ReviewStatus.DRAFT, ReviewStatus.PENDING)
            audit(session, user, "review.submit", "image", image.id, revision_of=image.revision_of)
            return image_info(image)

    def _link_revision(self, session: Session, user: User, image: Image, revision_of: int) -> None:
        """Record `image` as a revision of the author's own earlier image, refusing loops."""
        if not is_row_id(revision_of):
            raise ValidationFailed("revision_of", "Give the id of an earlier image.")
        if image.revision_of is not None and image.revision_of != revision_of:
            raise ValidationFailed(
                "revision_of", f"Image {image.id} is already a revision of image {image.revision_of}."
            )
        try:
            earlier = self._image(session, user, revision_of)
        except NotFound:
            raise ValidationFailed("revision_of", f"Image {revision_of} does not exist.") from None
        if earlier.generation.user_id != user.id:
            raise ValidationFailed("revision_of", "An image can only revise one of your own images.")
        if image.id in {earlier.id, *(i.id for i in self._ancestors(session, earlier))}:
            raise ValidationFailed(
                "revision_of", f"Image {image.id} cannot revise itself or its own revision."
            )
        image.revision_of = earlier.id
        session.flush()

    def decide(self, actor: Actor, image_id: int, decision: Decision | str, comment: str = "") -> ReviewInfo:
        """A reviewer's or admin's decision on a pending image that is not from their own generation."""
        try:
            decision = Decision(decision)
        except ValueError:
            raise ValidationFailed("decision", "Use approve, reject or request_changes.") from None
        comment = checked_text(str(comment).strip(), "comment")
        if len(comment) > MAX_COMMENT:
            raise ValidationFailed("comment", f"A comment has at most {MAX_COMMENT} characters.")
        if decision in NEEDS_COMMENT and not comment:
            raise ValidationFailed("comment", NEEDS_COMMENT[decision])
        with self.write() as session:
            reviewer = acting_person(session, actor, *STAFF)
            image = self._image(session, reviewer, image_id)
            if image.generation.user_id == reviewer.id:
                raise PermissionDenied(
                    "Four-eyes rule: someone else must review images from your own generations."
                )
            _set_status(session, image, ReviewStatus.PENDING, OUTCOME[decision])
            review = Review(
                image_id=image.id, reviewer_id=reviewer.id, decision=decision.value, comment=comment
            )
            session.add(review)
            session.flush()
            audit(session, reviewer, "review.decide", "image", image.id, decision=decision.value)
            return review_info(review)

    def history(self, actor: Actor, image_id: int) -> list[ReviewInfo]:
        """Every decision on an image, oldest first."""
        with self.db.read() as session:
            self._image(session, acting_person(session, actor), image_id)
            reviews = session.scalars(select(Review).where(Review.image_id == image_id).order_by(Review.id))
            return [review_info(r) for r in reviews]

    def lineage(self, actor: Actor, image_id: int) -> list[ImageInfo]:
        """The images `image_id` revises, the nearest first (empty when it is no revision)."""
        with self.db.read() as session:
            user = acting_person(session, actor)
            return [
                image_info(i)
                for i in self._ancestors(session, self._image(session, user, image_id))
                if can_see_generation(user, i.generation)
            ]

    @staticmethod
    def _ancestors(session: Session, image: Image) -> list[Image]:
        chain: list[Image] = []
        while image.revision_of is not None and len(chain) < MAX_LINEAGE:
            image = session.get_one(Image, image.revision_of)
            chain.append(image)
        return chain

    def on_prompt(self, actor: Actor, prompt_id: int, limit: int = 20) -> list[ReviewInfo]:
        """The latest decisions on any image made from a prompt, newest first: what reviewers said before."""
        check_page(1, limit)
        with self.db.read() as session:
            user = acting_person(session, actor)
            prompt = visible_prompt(session, user, prompt_id)
            reviews = session.scalars(
                select(Review)
                .join(Image, Review.image_id == Image.id)
                .join(Generation, Image.generation_id == Generation.id)
                .where(Generation.prompt_id == prompt.id)
                .options(selectinload(Review.reviewer))
                .order_by(Review.id.desc())
                .limit(limit)
            ).all()
            return [
                review_info(r)
                for r in reviews
                if can_see_generation(user, session.get_one(Image, r.image_id).generation)
            ]

    def inbox(self, actor: Actor, page: int = 1, page_size: int = 20) -> Page[InboxItem]:
        """Decisions on the actor's own images, newest first: what the author has to act on."""
        check_page(page, page_size)
        with self.db.read() as session:
            user = acting_person(session, actor)
            base = (
                select(Review)
                .join(Image, Review.image_id == Image.id)
                .join(Generation, Image.generation_id == Generation.id)
                .where(Generation.user_id == user.id)
            )
            total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
            reviews = session.scalars(
                base.options(selectinload(Review.reviewer))
                .order_by(Review.id.desc())
                .limit(page_size)
                .offset((page - 1) * page_size)
            ).all()
            items = []
            for review in reviews:
                image = session.get_one(Image, review.image_id)
                items.append(InboxItem(review_info(review), image_info(image), image.generation.prompt.text))
            return Page(tuple(items), total, page, page_size)

    def queue(self, actor: Actor, page: int = 1, page_size: int = 20) -> Page[ReviewQueueItem]:
        """Pending images the reviewer may decide (not their own), oldest first."""
        check_page(page, page_size)
        with self.db.read() as session:
            reviewer = acting_person(session, actor, *STAFF)
            where = (Image.review_status == ReviewStatus.PENDING.value, Generation.user_id != reviewer.id)
            base = select(Image).join(Generation, Image.generation_id == Generation.id).where(*where)
            total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
            images = session.scalars(
                base.options(
                    selectinload(Image.generation).options(
                        selectinload(Generation.user),
                        selectinload(Generation.images),
                        selectinload(Generation.prompt).selectinload(Prompt.author),
                    )
                )
                .order_by(Image.id)
                .limit(page_size)
                .offset((page - 1) * page_size)
            ).all()
            items = tuple(
                ReviewQueueItem(
                    image_info(i), generation_info(i.generation), prompt_info(i.generation.prompt)
                )
                for i in images
            )
            return Page(items, total, page, page_size)

    @staticmethod
    def _image(session: Session, user: User, image_id: int) -> Image:
        image: Image = get_or_404(session, Image, image_id, "Image")
        if not can_see_generation(user, image.generation):
            raise NotFound(f"Image {image_id} does not exist.")
        return image
