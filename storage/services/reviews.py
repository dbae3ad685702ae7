"""Reviews: the author submits a draft image, a reviewer or admin (never the author) decides.

draft --submit--> pending --approve--> approved
                  pending --reject---> rejected
                  pending --request_changes--> draft (the author may submit again)

Decisions are appended to `reviews` and never changed (database triggers refuse UPDATE and
DELETE); the image's `review_status` follows the latest one. Status moves are conditional UPDATEs,
so two reviewers deciding the same image at once cannot both succeed.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from ..errors import InvalidState, NotFound, PermissionDenied, ValidationFailed
from ..models import Generation, Image, Prompt, Review, User
from ..types import Actor, Decision, ImageInfo, Page, ReviewInfo, ReviewQueueItem, ReviewStatus
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
    prompt_info,
    refuse_nul,
    review_info,
)

MAX_COMMENT = 2000
OUTCOME = {
    Decision.APPROVE: ReviewStatus.APPROVED,
    Decision.REJECT: ReviewStatus.REJECTED,
    Decision.REQUEST_CHANGES: ReviewStatus.DRAFT,
}


def _set_status(session: Session, image: Image, old: ReviewStatus, new: ReviewStatus) -> None:
    changed = changed_rows(
        session,
        update(Image).where(Image.id == image.id, Image.review_status == old.value).values(review_status=new.value),
    )
    session.refresh(image)
    if changed != 1:
        raise InvalidState(f"Image {image.id} is {image.review_status}, not {old.value}.")


class ReviewService(Service):
    def submit(self, actor: Actor, image_id: int) -> ImageInfo:
        """The generation's owner asks for a review of a draft image."""
        with self.write() as session:
            user = acting_person(session, actor)
            image = self._image(session, user, image_id)
            if image.generation.user_id != user.id:
                raise PermissionDenied("Only the person who made an image can submit it for review.")
            if image.file_missing:
                raise InvalidState(f"The file of image {image_id} is missing; it cannot be reviewed.")
            _set_status(session, image, ReviewStatus.DRAFT, ReviewStatus.PENDING)
            audit(session, user, "review.submit", "image", image.id)
            return image_info(image)

    def decide(self, actor: Actor, image_id: int, decision: Decision | str, comment: str = "") -> ReviewInfo:
        """A reviewer's or admin's decision on a pending image that is not from their own generation."""
        try:
            decision = Decision(decision)
        except ValueError:
            raise ValidationFailed("decision", "Use approve, reject or request_changes.") from None
        comment = refuse_nul(str(comment).strip(), "comment")
        if len(comment) > MAX_COMMENT:
            raise ValidationFailed("comment", f"A comment has at most {MAX_COMMENT} characters.")
        if decision == Decision.REQUEST_CHANGES and not comment:
            raise ValidationFailed("comment", "Say what should change.")
        with self.write() as session:
            reviewer = acting_person(session, actor, *STAFF)
            image = self._image(session, reviewer, image_id)
            if image.generation.user_id == reviewer.id:
                raise PermissionDenied("Four-eyes rule: someone else must review images from your own generations.")
            _set_status(session, image, ReviewStatus.PENDING, OUTCOME[decision])
            review = Review(image_id=image.id, reviewer_id=reviewer.id, decision=decision.value, comment=comment)
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
                ReviewQueueItem(image_info(i), generation_info(i.generation), prompt_info(i.generation.prompt))
                for i in images
            )
            return Page(items, total, page, page_size)

    @staticmethod
    def _image(session: Session, user: User, image_id: int) -> Image:
        image: Image = get_or_404(session, Image, image_id, "Image")
        if not can_see_generation(user, image.generation):
            raise NotFound(f"Image {image_id} does not exist.")
        return image
